import { createServer, type Server } from "node:http";
import { gzipSync } from "node:zlib";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { alwaysReadyBody } from "../../../test/always-ready-body.ts";
import { systemClock } from "../clock.ts";
import { isHerdlessError } from "../errors.ts";
import { fetchOrigin, type FetchLike } from "./origin-client.ts";

/** Raw responses (after "HTTP/1.1 "), for what Node's header writer would refuse to send. */
const RAW: Record<string, string> = {
  "/bad-name": "200 OK\r\nContent-Length: 2\r\nX Bad: 1\r\nX-Good: 1\r\nConnection: close\r\n\r\nok",
  "/not-modified-with-length": '304 Not Modified\r\nContent-Length: 100\r\nETag: "a"\r\nConnection: close\r\n\r\n',
  "/custom-coding": "200 OK\r\nContent-Length: 5\r\nContent-Encoding: x-custom\r\nConnection: close\r\n\r\nxxxxx",
};

let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = req.url ?? "/";
    if (path === "/ok") {
      res.writeHead(200, {
        "content-type": "text/plain",
        "x-drop": "1",
        connection: "x-drop",
        "keep-alive": "timeout=5",
      });
      res.end("hello");
    } else if (path === "/truncated") {
      res.writeHead(200, { "content-length": "100" });
      res.write("only part");
      setTimeout(() => res.socket?.destroy(), 5);
    } else if (path === "/reset") {
      req.socket.destroy();
    } else if (path === "/hang") {
      // never answers
    } else if (path === "/big") {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(Buffer.alloc(10_000, 7));
    } else if (path === "/big-declared") {
      res.writeHead(200, { "content-length": "10000" });
      res.end(Buffer.alloc(10_000, 9));
    } else if (path in RAW) {
      // Written to the socket as is: Node's own writer refuses what these test.
      req.socket.end(`HTTP/1.1 ${RAW[path]}`);
    } else if (path === "/gzip") {
      res.writeHead(200, { "content-encoding": "gzip" });
      res.end(gzipSync("unzipped"));
    } else if (path === "/cookie") {
      res.setHeader("set-cookie", ["a=1", "b=2"]);
      res.end("c");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const call = (path: string, timeoutMs = 2_000, maxBodyBytes = 1_000) =>
  fetchOrigin(
    fetch,
    { url: `${base}${path}`, method: "GET", headers: [] },
    { timeoutMs, maxBodyBytes, clock: systemClock },
  );

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return isHerdlessError(error) ? error.code : String(error);
  }
}

describe("origin client", () => {
  it("buffers a complete body and strips hop-by-hop and Connection-listed headers", async () => {
    const res = await call("/ok");
    expect(res.kind).toBe("buffered");
    expect(res.kind === "buffered" && new TextDecoder().decode(res.body)).toBe("hello");
    const names = res.headers.map(([n]) => n);
    expect(names).toContain("content-type");
    expect(names).not.toContain("x-drop");
    expect(names).not.toContain("keep-alive");
    expect(names).not.toContain("connection");
    expect(names).not.toContain("content-length");
  });

  it("lets timers run while it buffers a body whose every chunk is ready at once, not only after the last", async () => {
    // Read in one chain of promise reactions, such a body (an origin on a fast socket) keeps
    // workerd from polling for I/O: every other request of the isolate waits for its end.
    const { body, sent, bytes } = alwaysReadyBody();
    let sentWhenTimerRan = -1;
    setTimeout(() => (sentWhenTimerRan = sent()), 0);
    const res = await fetchOrigin(
      async () => new Response(body),
      { url: "http://origin.test/large", method: "GET", headers: [] },
      { timeoutMs: 10_000, maxBodyBytes: 8 * 1024 * 1024, clock: systemClock },
    );
    expect(res.kind === "buffered" && res.body.byteLength).toBe(bytes);
    expect(sentWhenTimerRan).toBeGreaterThan(0);
    expect(sentWhenTimerRan).toBeLessThan(sent());
  });

  it("refuses a body shorter than its Content-Length", async () => {
    expect(await codeOf(call("/truncated"))).toBe("ORIGIN_TRUNCATED");
  });

  it("reports a connection reset as a network failure", async () => {
    expect(await codeOf(call("/reset"))).toBe("ORIGIN_NETWORK");
  });

  it("aborts a request that outlives its timeout", async () => {
    expect(await codeOf(call("/hang", 50))).toBe("ORIGIN_TIMEOUT");
  });

  it("streams a body that grows past the limit, with every byte", async () => {
    const res = await call("/big");
    expect(res.kind).toBe("streamed");
    const bytes = new Uint8Array(await new Response(res.kind === "streamed" ? res.body : null).arrayBuffer());
    expect(bytes.byteLength).toBe(10_000);
    expect(bytes.every((b) => b === 7)).toBe(true);
  });

  it("streams at once when Content-Length declares a body past the limit", async () => {
    const res = await call("/big-declared");
    expect(res.kind).toBe("streamed");
    expect((await new Response(res.kind === "streamed" ? res.body : null).arrayBuffer()).byteLength).toBe(10_000);
  });

  it("keeps each Set-Cookie separately for pass-through", async () => {
    const res = await call("/cookie");
    expect(res.headers.filter(([n]) => n === "set-cookie").map(([, v]) => v)).toEqual(["a=1", "b=2"]);
  });

  it("records request and response instants", async () => {
    const res = await call("/ok");
    expect(res.responseAt).toBeGreaterThanOrEqual(res.requestAt);
  });
});

describe("RFC 9110 §5.1, §5.5 malformed origin fields", () => {
  it("drops a field whose name is not a token and reports it, keeping the rest", async () => {
    const res = await call("/bad-name");
    expect(res.headers).toContainEqual(["x-good", "1"]);
    expect(res.headers.some(([name]) => name === "x bad")).toBe(false);
    expect(res.droppedFields).toEqual(["x bad"]);
  });
});

describe("RFC 9110 §6.4.1, §8.6 bodies a status or method rules out", () => {
  it("does not take a 304's Content-Length for a truncated body", async () => {
    const res = await call("/not-modified-with-length");
    expect(res.status).toBe(304);
    expect(res.kind).toBe("buffered");
  });
});

describe("RFC 9110 §8.4 Content-Encoding labels the body as read", () => {
  it("keeps a coding fetch did not decode, with the body as sent", async () => {
    const res = await call("/custom-coding");
    expect(res.headers).toContainEqual(["content-encoding", "x-custom"]);
    expect(res.kind === "buffered" && new TextDecoder().decode(res.body)).toBe("xxxxx");
  });

  it("drops the label of a coding fetch decoded", async () => {
    const res = await call("/gzip");
    expect(res.headers.some(([name]) => name === "content-encoding")).toBe(false);
    expect(res.kind === "buffered" && new TextDecoder().decode(res.body)).toBe("unzipped");
  });

  it("keeps the label when the runtime's rule says it did not decode", async () => {
    const res = await fetchOrigin(
      async () => new Response("raw", { headers: { "content-encoding": "deflate" } }),
      { url: `${base}/x`, method: "GET", headers: [] },
      { timeoutMs: 1_000, maxBodyBytes: 1_000, clock: systemClock, decodes: (coding) => coding === "gzip" },
    );
    expect(res.headers).toContainEqual(["content-encoding", "deflate"]);
  });
});

describe("RFC 9110 §15.2 interim answers", () => {
  const request = (onInterim: (code: number, fields: [string, string][]) => void) => ({
    url: "http://origin.test/",
    method: "GET",
    headers: [] as [string, string][],
    onInterim,
  });
  const options = { timeoutMs: 1_000, maxBodyBytes: 1_000, clock: systemClock };

  it("reach the client each 1xx but 100 and 101, less hop-by-hop fields, and none once the final answer is in", async () => {
    let late: () => void = () => undefined;
    const origin: FetchLike = async (_url, init) => {
      init.onInterim?.(100, new Headers());
      init.onInterim?.(101, new Headers({ upgrade: "websocket" }));
      init.onInterim?.(
        103,
        new Headers({
          link: "</a.css>; rel=preload",
          connection: "x-hop",
          "x-hop": "1",
          "keep-alive": "timeout=5",
          "content-length": "0",
          "x-hint": "1",
        }),
      );
      init.onInterim?.(102, new Headers());
      late = () => init.onInterim?.(103, new Headers({ link: "</late.css>" }));
      return new Response("ok", { status: 200, headers: { "cache-control": "max-age=60" } });
    };
    const heard: [number, [string, string][]][] = [];
    const res = await fetchOrigin(
      origin,
      request((code, fields) => heard.push([code, fields])),
      options,
    );
    late();
    expect(heard).toEqual([
      [
        103,
        [
          ["link", "</a.css>; rel=preload"],
          ["x-hint", "1"],
        ],
      ],
      [102, []],
    ]);
    expect(res.headers.map(([name]) => name)).not.toContain("link");
  });

  it("a client that cannot take one changes nothing for the fetch", async () => {
    const origin: FetchLike = async (_url, init) => {
      init.onInterim?.(103, new Headers({ link: "</a.css>" }));
      return new Response("ok");
    };
    const res = await fetchOrigin(
      origin,
      request(() => {
        throw new Error("client gone");
      }),
      options,
    );
    expect(res.status).toBe(200);
  });
});
