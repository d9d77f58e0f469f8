import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { connect, type AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { herdless } from "./attack-kit.ts";

/**
 * HTTP/1.1 framing on one client connection through the Node server: each request written
 * gets its answer in the order it was written, whatever the requests behind it (one the
 * parser refuses, an upgrade herdless does not take, one after an answer that closes the
 * connection), and nothing the client wrote after such an answer reaches the origin.
 */

const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

interface Origin {
  url: string;
  /** `METHOD path` of every request the origin read, in order. */
  seen: string[];
  /** Answers the held `/slow` request (a cold miss the origin takes its time over). */
  release(): void;
  /** Resolves once the origin holds `/slow`. */
  slowArrived: Promise<void>;
}

/** An origin answering `page <path>` (stored a minute), `/slow` only once released. */
async function origin(): Promise<Origin> {
  const seen: string[] = [];
  let held: ServerResponse | undefined;
  let arrived!: () => void;
  const slowArrived = new Promise<void>((resolve) => (arrived = resolve));
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    res.setHeader("cache-control", "max-age=60");
    if (req.url === "/slow") {
      held = res;
      arrived();
      return;
    }
    res.end(`page ${req.url}`);
  });
  // A WebSocket handshake is switched (its accept the key's, RFC 6455 §4.2.2), one message
  // sent, and the connection closed.
  server.on("upgrade", (req: IncomingMessage, socket: Duplex) => {
    seen.push(`upgrade ${req.url}`);
    const accept = createHash("sha1")
      .update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest("base64");
    socket.end(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\nhello`,
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, seen, slowArrived, release: () => held?.end("page /slow") };
}

interface Answer {
  status: number;
  body: string;
}

/** The answers in `text`, read in order by their framing (Content-Length or chunked). */
function answers(text: string): Answer[] {
  const found: Answer[] = [];
  let rest = text;
  while (rest.startsWith("HTTP/1.1 ")) {
    const end = rest.indexOf("\r\n\r\n");
    if (end < 0) break;
    const head = rest.slice(0, end);
    let body = "";
    rest = rest.slice(end + 4);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (length) {
      body = rest.slice(0, Number(length[1]));
      rest = rest.slice(Number(length[1]));
    } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      for (;;) {
        const eol = rest.indexOf("\r\n");
        const size = parseInt(rest.slice(0, eol), 16);
        rest = rest.slice(eol + 2);
        if (!(size > 0)) {
          rest = rest.slice(2);
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
    }
    found.push({ status: Number(head.slice(9, 12)), body });
  }
  if (rest.length > 0) found.push({ status: 0, body: rest });
  return found;
}

/**
 * Writes `bytes` on one connection; once `ready` resolves, `then` runs (the origin answers
 * the slow request). Resolves with what came back when herdless closes the connection.
 */
function pipelined(base: string, bytes: string, ready: Promise<void>, then: () => void): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    socket.on("close", () => resolve(text));
    socket.on("error", reject);
    void ready.then(async () => {
      // The requests behind the slow one are read and started before it is answered.
      for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
      then();
    });
  });
}

/**
 * Writes each of `writes` on one connection, the next once an answer to the one before has
 * begun to arrive. Resolves with what came back when herdless closes the connection (or
 * 2 s after the last write: a connection left open is not a close).
 */
function rawExchange(port: number, writes: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const left = [...writes];
    let text = "";
    const socket = connect(port, "127.0.0.1", () => socket.write(left.shift()!));
    const done = () => {
      socket.destroy();
      resolve(text);
    };
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      const next = left.shift();
      if (next !== undefined) socket.write(next);
      if (left.length === 0 && next !== undefined) setTimeout(done, 2_000).unref();
    });
    socket.on("close", done);
    socket.on("error", reject);
  });
}

const SLOW = "GET /slow HTTP/1.1\r\nHost: shop.test\r\n\r\n";

/** A fresh origin and herdless, `bytes` written on one connection behind a slow request; the origin answers once the rest is read. */
async function sentBehindSlow(bytes: string): Promise<{ site: Awaited<ReturnType<typeof origin>>; text: string }> {
  const site = await origin();
  const cache = await herdless(site.url);
  cleanup.push(() => cache.close());
  const text = await pipelined(cache.base, bytes, site.slowArrived, site.release);
  return { site, text };
}

describe("security: answers keep the order of the requests on one connection (Node)", () => {
  it("a request the parser refuses behind one not yet answered: the earlier answer first, then the 400, then the connection closes", async () => {
    const { text } = await sentBehindSlow(`${SLOW}GET /bad HTTP/1.1\r\nHost: shop.test\r\nBad Field: x\r\n\r\n`);
    const got = answers(text);
    expect(got.map((a) => a.status)).toEqual([200, 400]);
    expect(got[0]!.body).toBe("page /slow");
    expect(got[1]!.body).toContain("HPE_INVALID_HEADER_TOKEN");
  });

  it("a chunked body the parser refuses behind one not yet answered: the earlier answer first, then the 400", async () => {
    const { text } = await sentBehindSlow(
      `${SLOW}POST /form HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n`,
    );
    const got = answers(text);
    expect(got.map((a) => a.status)).toEqual([200, 400]);
    expect(got[0]!.body).toBe("page /slow");
    expect(got[1]!.body).toContain("HPE_INVALID_CHUNK_SIZE");
  });

  it("bytes after a request that asked to close, while its answer is still being made: that answer whole, and nothing else", async () => {
    const { site, text } = await sentBehindSlow(
      "GET /slow HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\nGET /next HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    );
    expect(answers(text).map((a) => `${a.status} ${a.body}`)).toEqual(["200 page /slow"]);
    expect(site.seen).toEqual(["GET /slow"]);
  });

  it("an h2c upgrade behind a request not yet answered is answered in its turn, as are the requests behind it", async () => {
    const started = Date.now();
    const { text } = await sentBehindSlow(
      SLOW +
        "GET /page HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
        "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n" +
        "GET /last HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    );
    expect(answers(text).map((a) => `${a.status} ${a.body}`)).toEqual([
      "200 page /slow",
      "200 page /page",
      "200 page /last",
    ]);
    // Not left to the keep-alive timeout (65 s).
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it("a CONNECT behind a request not yet answered gets its 405 after that answer, never in its place", async () => {
    const { site, text } = await sentBehindSlow(`${SLOW}CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n`);
    expect(answers(text).map((a) => `${a.status} ${a.body}`)).toEqual([
      "200 page /slow",
      "405 CONNECT is not allowed through this cache\n",
    ]);
    expect(site.seen).toEqual(["GET /slow"]);
  });

  it("a WebSocket handshake behind a request not yet answered is switched after that answer, never inside it", async () => {
    const { text } = await sentBehindSlow(
      SLOW +
        "GET /ws HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    const [first, ...rest] = answers(text);
    expect(`${first?.status} ${first?.body}`).toBe("200 page /slow");
    // The 101, then the origin's bytes after it (the answers' reader takes them as no HTTP: 0).
    expect(rest.map((a) => `${a.status} ${a.body}`)).toEqual(["101 ", "0 hello"]);
  });

  it("after a 417 nothing the client wrote behind the refused request reaches the origin, its body least of all", async () => {
    const smuggled = "GET /smuggled HTTP/1.1\r\nHost: shop.test\r\n\r\n";
    const { site, text } = await sentBehindSlow(
      SLOW +
        `POST /form HTTP/1.1\r\nHost: shop.test\r\nExpect: x-attack\r\nContent-Length: ${smuggled.length}\r\n\r\n` +
        smuggled +
        "POST /after HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 0\r\n\r\n",
    );
    expect(answers(text).map((a) => a.status)).toEqual([200, 417]);
    expect(site.seen).toEqual(["GET /slow"]);
  });

  it("a server closing answers the request it reads with Connection: close and starts none behind it", async () => {
    const site = await origin();
    const cache = await herdless(site.url);
    // Closing is idempotent: the cleanup waits for the close begun below.
    cleanup.push(() => cache.close());
    const { port } = new URL(cache.base);
    const socket = connect(Number(port), "127.0.0.1", () => socket.write(SLOW));
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    const ended = new Promise((resolve) => socket.on("close", resolve));
    await site.slowArrived;
    void cache.close();
    socket.write("GET /a HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /b HTTP/1.1\r\nHost: shop.test\r\n\r\n");
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    site.release();
    await ended;
    expect(answers(text).map((a) => `${a.status} ${a.body}`)).toEqual(["200 page /slow", "200 page /a"]);
    expect(site.seen).toEqual(["GET /slow", "GET /a"]);
  });

  // A request answered before its body is read (a hit, a 405, a refused target), whose body
  // the parser then refuses: a 400 after its answer was a second answer to one request, and a
  // client (or a proxy reusing the connection) read it as the answer to the next request it
  // wrote, a victim's.
  for (const [what, attack, status] of [
    ["a hit", "GET /page HTTP/1.1", 200],
    ["a 405", "TRACE /page HTTP/1.1", 405],
    ["a refused target", "GET ws://shop.test/page HTTP/1.1", 400],
  ] as const)
    it(`a chunked body refused after its request was answered (${what}): one answer, and the next request on the connection gets none`, async () => {
      const site = await origin();
      const cache = await herdless(site.url);
      cleanup.push(() => cache.close());
      const { port } = new URL(cache.base);
      // The page is stored, so the attacker's GET is a hit answered without reading its body.
      const warm = answers(
        await rawExchange(Number(port), [`GET /page HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n`]),
      );
      expect(warm.map((a) => a.status)).toEqual([200]);
      const text = await rawExchange(Number(port), [
        `${attack}\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n`,
        // Once that answer arrived: a chunk the parser refuses, then the victim's request.
        "5\r\nhelloXX\r\n0\r\n\r\nGET /victim HTTP/1.1\r\nHost: shop.test\r\n\r\n",
      ]);
      // Its own answer only: no 400 naming the chunk (HPE_STRICT) behind it.
      expect(answers(text).map((a) => a.status)).toEqual([status]);
      expect(site.seen).not.toContain("GET /victim");
    });

  it("a client that sends no body after its refused Expect: what it writes next is never read as a request", async () => {
    const { site, text } = await sentBehindSlow(
      SLOW +
        "POST /form HTTP/1.1\r\nHost: shop.test\r\nExpect: x-attack\r\nContent-Length: 10\r\n\r\n" +
        "GET /next HTTP/1.1\r\nHost: shop.test\r\n\r\n",
    );
    expect(answers(text).map((a) => a.status)).toEqual([200, 417]);
    expect(site.seen).toEqual(["GET /slow"]);
  });
});
