import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, type Herdless, type RawAnswer } from "./attack-kit.ts";

/**
 * Origin answers that are not HTTP a client can be given, from an origin that writes its
 * bytes by hand: each is a clean 502 naming what was wrong, within the origin's deadline,
 * nothing stored, and the origin permit is given back (a cap of one, so a held permit
 * would refuse the victim). (Malformed fields: test/node/security-store.test.ts.)
 */
const ANSWERS: Record<string, string> = {
  "/switch": "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nhello",
  "/switch-bare": "HTTP/1.1 101 Switching Protocols\r\n\r\n",
  "/status-99": "HTTP/1.1 099 Odd\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello",
  "/status-600": "HTTP/1.1 600 Odd\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello",
  "/length-word": "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: abc\r\n\r\nhello",
  "/length-twice":
    "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
  "/length-huge": "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 99999999999999999999\r\n\r\nhello",
  "/http09": "hello world",
  // A transfer coding herdless never asked for (it sends no TE): the gzip bytes inside the
  // chunks would be stored and served unlabelled, to clients that never accepted gzip.
  "/coding-gzip-chunked":
    "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  "/coding-gzip-close": "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: gzip\r\n\r\nhello",
};

const FAULTS: Record<string, RegExp> = {
  "/switch": /status 101 \(a protocol switch herdless never asked for\)/,
  "/switch-bare": /status 101/,
  "/status-99": /status 99/,
  "/status-600": /status 600/,
  "/length-word": /Invalid character in Content-Length/,
  "/length-twice": /Duplicate Content-Length/,
  "/length-huge": /Content-Length overflow/,
  "/http09": /is not valid HTTP\/1\.1/,
  "/coding-gzip-chunked": /transfer coding "gzip", one herdless cannot undo/,
  "/coding-gzip-close": /transfer coding "gzip", one herdless cannot undo/,
};

let origin: Server | undefined;
let cache: Herdless | undefined;
/** Connections herdless keeps alive to an origin that never closes them itself. */
const kept = new Set<Socket>();
afterEach(async () => {
  await cache?.close();
  for (const socket of kept) socket.destroy();
  kept.clear();
  await new Promise((resolve) => (origin ? origin.close(resolve) : resolve(undefined)));
  origin = cache = undefined;
});

async function handWrittenOrigin(counts: Map<string, number>): Promise<string> {
  const server = (origin = createServer((socket: Socket) => {
    let head = "";
    socket.on("error", () => undefined);
    socket.on("data", (data: Buffer) => {
      head += data.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      const path = head.split(" ")[1]!;
      counts.set(path, (counts.get(path) ?? 0) + 1);
      socket.end(ANSWERS[path] ?? "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 4\r\n\r\npage");
    });
  }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The answer, or "no answer" once the origin's deadline has long passed. */
function within(ms: number, answer: Promise<RawAnswer>): Promise<RawAnswer | "no answer"> {
  return Promise.race([answer, new Promise<"no answer">((resolve) => setTimeout(() => resolve("no answer"), ms))]);
}

describe("origin answers no client can be given (Node)", () => {
  it.each(Object.keys(ANSWERS))(
    "%s: a 502 naming the fault, never stored, the origin permit given back",
    async (path) => {
      const counts = new Map<string, number>();
      cache = await herdless(await handWrittenOrigin(counts), {
        origin: { maxConcurrency: 1, timeoutMs: 1_000, queueTimeoutMs: 500 },
        breaker: { backoffBaseMs: 0 },
      });
      for (let i = 0; i < 2; i++) {
        const attack = await within(3_000, get(cache.base, path));
        expect(attack).not.toBe("no answer");
        const { status, body } = attack as RawAnswer;
        expect(status).toBe(502);
        expect(body).toMatch(FAULTS[path]!);
      }
      expect(counts.get(path)).toBe(2);
      const victim = await within(3_000, get(cache.base, "/page"));
      expect(victim).not.toBe("no answer");
      expect([(victim as RawAnswer).status, (victim as RawAnswer).body]).toEqual([200, "page"]);
    },
  );
});

describe("an origin answer with thousands of fields (Node)", () => {
  it("the fields past Node's 2,000th still count: a Cache-Control: private and a Set-Cookie after 2,100 short fields are never stored for the next visitor", async () => {
    // node:http's client keeps the first 2,000 fields of an answer by default and drops the
    // rest unheard (maxHeadersCount); 2,100 `a: b` fields still fit the 16 KiB head limit.
    const filler = Array.from({ length: 2_100 }, (_, i) => `x${i}: 1\r\n`).join("");
    let n = 0;
    const server = (origin = createServer((socket: Socket) => {
      socket.on("error", () => undefined);
      socket.once("data", () => {
        n++;
        const body = `account page of visitor #${n}`;
        socket.end(
          `HTTP/1.1 200 OK\r\n${filler}Cache-Control: private, max-age=60\r\nSet-Cookie: session=${n}\r\n` +
            `Content-Length: ${body.length}\r\n\r\n${body}`,
        );
      });
    }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cache = await herdless(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const first = await get(cache.base, "/account");
    expect([first.status, first.body, first.headers["set-cookie"]]).toEqual([
      200,
      "account page of visitor #1",
      "session=1",
    ]);
    const victim = await get(cache.base, "/account");
    expect(victim.body).toBe("account page of visitor #2");
    expect(victim.headers["set-cookie"]).toBe("session=2");
  });
});

/**
 * An origin that closes a kept-alive connection as herdless writes the next request on it
 * (its idle timeout shorter than the agent's and unannounced, or a restart): the connection
 * is reset before any answer. Each connection here answers its first request and resets on
 * its second. A cap of one and a breaker that opens on the first failure show a request
 * wrongly failed or counted.
 */
async function closingOrigin(seen: string[]): Promise<string> {
  const server = (origin = createServer((socket: Socket) => {
    let head = "";
    let requests = 0;
    kept.add(socket);
    socket.on("error", () => undefined);
    socket.on("data", (data: Buffer) => {
      head += data.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) return;
      const [method = "", path = ""] = head.split(" ");
      head = "";
      seen.push(`${method} ${path}${++requests === 1 ? "" : " (reset)"}`);
      if (requests > 1) socket.resetAndDestroy();
      else
        socket.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${path.length}\r\n\r\n${path}`);
    });
  }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("a kept-alive origin connection closed under a request (Node)", () => {
  const strict = {
    origin: { maxConcurrency: 1, timeoutMs: 1_000, queueTimeoutMs: 500 },
    breaker: { failureThreshold: 1, backoffBaseMs: 0 },
  };

  it("a relayed GET is asked again on a new connection: the visitor gets the page, the breaker stays closed", async () => {
    const seen: string[] = [];
    cache = await herdless(await closingOrigin(seen), strict);
    // Relayed (a Cookie): a fill never goes on a kept-alive connection (origin-agents.ts).
    const session = { headers: { cookie: "session=1" } };
    expect((await get(cache.base, "/a", session)).body).toBe("/a");
    const second = await get(cache.base, "/b", session);
    expect([second.status, second.body]).toEqual([200, "/b"]);
    expect(seen).toEqual(["GET /a", "GET /b (reset)", "GET /b"]);
    // The breaker opened on a counted failure would refuse this cold page.
    const head = await get(cache.base, "/c", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(seen.slice(3)).toEqual(["GET /c"]);
  });

  it("a POST goes on a connection of its own, never on a kept-alive one the origin may be closing: sent once, answered", async () => {
    const seen: string[] = [];
    cache = await herdless(await closingOrigin(seen), strict);
    await get(cache.base, "/a");
    const post = await get(cache.base, "/order", { method: "POST", headers: { "content-length": "2" }, body: "{}" });
    expect([post.status, post.body]).toEqual([200, "/order"]);
    expect(seen).toEqual(["GET /a", "POST /order"]);
  });

  it("a request reset on a new connection is not asked again: that origin is failing, not closing an idle connection", async () => {
    const seen: string[] = [];
    const server = (origin = createServer((socket: Socket) => {
      socket.on("error", () => undefined);
      socket.once("data", () => {
        seen.push("reset");
        socket.resetAndDestroy();
      });
    }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cache = await herdless(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, strict);
    expect((await get(cache.base, "/a")).status).toBe(502);
    expect(seen).toEqual(["reset"]);
  });
});

describe("a 205 Reset Content that declares a body (Node)", () => {
  it("attack: GETs answered `205` with 13 bytes declared (Node's own server for `res.end(text)`) are relayed with no content, and never open the breaker for other pages", async () => {
    const raw = createServer((socket) => {
      socket.on("data", (data: Buffer) => {
        const path = /^GET (\S+)/.exec(data.toString("latin1"))?.[1] ?? "";
        socket.write(
          path.startsWith("/form")
            ? "HTTP/1.1 205 Reset Content\r\nContent-Length: 13\r\n\r\nReset Content"
            : "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 4\r\n\r\npage",
        );
      });
    });
    await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve));
    const local = await herdless(`http://127.0.0.1:${(raw.address() as AddressInfo).port}`);
    try {
      for (const path of ["/form1", "/form2", "/form3", "/form1?1", "/form2?1", "/form3?1", "/form1"]) {
        const res = await fetch(`${local.base}${path}`);
        expect(res.status).toBe(205);
        expect(res.headers.get("content-length") ?? "0").toBe("0");
        expect(await res.text()).toBe("");
      }
      // Read as bodies cut short, three URLs' 205s were a sick origin: the breaker opened for every page.
      const victim = await fetch(`${local.base}/page`);
      expect(victim.status).toBe(200);
      expect(await victim.text()).toBe("page");
    } finally {
      await local.close();
      await new Promise((resolve) => raw.close(resolve));
    }
  });
});
