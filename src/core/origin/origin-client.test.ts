import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemClock } from "../clock.ts";
import { isHerdlessError } from "../errors.ts";
import { fetchOrigin } from "./origin-client.ts";

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
