import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { RedisConnection } from "../../src/node/redis/connection.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";
import { raw } from "./attack-kit.ts";
import { startRedisServer } from "./redis-server.ts";

/**
 * RFC 9110 §15.2 on Node, over real sockets: an origin's interim answers (`103 Early Hints`,
 * `102 Processing`, any other 1xx but 100 and 101) reach the client whose request made the
 * origin request, before its final answer, less their hop-by-hop fields; a collapsed waiter
 * and a later hit get none, and nothing of them is stored (RFC 9111).
 */

const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** What the origin writes for one request: interim heads as given, then a 200. */
interface Script {
  /** Whole interim answers, written byte for byte (Node's writeEarlyHints would refuse some). */
  interim: string[];
  /** The final answer waits for this (a collapsed waiter joins meanwhile); the interim ones too. */
  hold?: Promise<void>;
  cacheControl?: string;
}

interface RawOrigin {
  url: string;
  /** `METHOD path` of each request, as it arrived. */
  seen: string[];
  /** Resolves when the n-th request (1-based) has arrived. */
  arrived(n: number): Promise<void>;
}

/** An origin on a bare socket, so interim heads leave exactly as written; one request per connection. */
async function rawOrigin(script: (method: string, path: string) => Script): Promise<RawOrigin> {
  const seen: string[] = [];
  const waiting: { n: number; resolve: () => void }[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let text = "";
    let answered = false;
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      if (answered || end === -1) return;
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
      if (text.length < end + 4 + length) return;
      answered = true;
      const [method = "", path = ""] = text.slice(0, text.indexOf("\r\n")).split(" ");
      seen.push(`${method} ${path}`);
      for (const w of waiting.filter((w) => w.n <= seen.length)) w.resolve();
      const { interim, hold, cacheControl = "max-age=60" } = script(method, path);
      const body = `page ${path}`;
      void (async () => {
        await hold;
        for (const head of interim) socket.write(head);
        socket.end(
          `HTTP/1.1 200 OK\r\nCache-Control: ${cacheControl}\r\nContent-Type: text/plain\r\n` +
            `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        );
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    arrived: (n) =>
      seen.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ n, resolve })),
  };
}

/** herdless's Node server (hit path on) in front of `originUrl`, closed after the test. */
async function herdless(originUrl: string): Promise<RunningServer> {
  const logger = jsonLogger("silent");
  const config = parseConfig({ origin: { url: originUrl } });
  const clock = new ManualClock(Date.now());
  const running = await startServer({ stack: localStack({ config, logger, clock }), logger, port: 0, fastHits: true });
  cleanup.push(() => running.close());
  return running;
}

/** Waits (boundedly, on I/O turns) until herdless holds `count` open client connections. */
async function connections(proxy: RunningServer, count: number): Promise<void> {
  for (let i = 0; i < 5_000; i++) {
    const open = await new Promise<number>((resolve) => proxy.server.getConnections((_e, n) => resolve(n)));
    if (open === count) {
      // The connection's state is known; a few more turns let its request reach the coordinator.
      for (let j = 0; j < 20; j++) await new Promise((resolve) => setImmediate(resolve));
      return;
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`herdless never held ${count} connections`);
}

interface Answer {
  /** Each interim answer the client heard: status and fields (names lowercased, in order). */
  interim: { status: number; fields: [string, string][] }[];
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A request with Node's client, which reports each 1xx it reads (`information`). */
function send(
  base: string,
  path: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const interim: Answer["interim"] = [];
    const options = { method: init.method ?? "GET", agent: false, headers: init.headers ?? {} };
    const req = httpRequest(`${base}${path}`, options, (res) => {
      let body = "";
      res.setEncoding("latin1");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ interim, status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("information", (info) => {
      const fields: [string, string][] = [];
      for (let i = 0; i + 1 < info.rawHeaders.length; i += 2)
        fields.push([info.rawHeaders[i]!.toLowerCase(), info.rawHeaders[i + 1]!]);
      interim.push({ status: info.statusCode, fields });
    });
    req.on("error", reject);
    req.end(init.body);
  });
}

/** Two links in one field and a quoted parameter with a space: Node's writeEarlyHints throws on both. */
const LINKS = '</style.css>; rel=preload; as=style, </font.woff2>; rel=preload; as=font; title="body font"';

function gate(): { hold: Promise<void>; open: () => void } {
  let open!: () => void;
  const hold = new Promise<void>((resolve) => (open = resolve));
  return { hold, open };
}

describe("RFC 9110 §15.2 on Node: interim answers", () => {
  it("a miss's client gets the origin's 103 as sent; a collapsed waiter and the hit after get none, and nothing of it is stored", async () => {
    const { hold, open } = gate();
    const origin = await rawOrigin(() => ({
      interim: [`HTTP/1.1 103 Early Hints\r\nLink: ${LINKS}\r\nX-Hint: early\r\n\r\n`],
      hold,
    }));
    const proxy = await herdless(origin.url);
    const leader = send(proxy.url, "/page");
    await origin.arrived(1);
    // The 103 leaves the origin only once the waiter has joined the leader's fetch.
    const waiter = send(proxy.url, "/page");
    await connections(proxy, 2);
    open();
    const [first, second] = await Promise.all([leader, waiter]);

    expect(first.interim).toEqual([
      {
        status: 103,
        fields: [
          ["link", LINKS],
          ["x-hint", "early"],
        ],
      },
    ]);
    expect(first).toMatchObject({ status: 200, body: "page /page" });
    expect(second.headers["cache-status"]).toContain("collapsed");
    expect(second).toMatchObject({ interim: [], status: 200, body: "page /page" });

    const hit = await send(proxy.url, "/page");
    expect(hit.headers["cache-status"]).toContain("hit");
    expect(hit.interim).toEqual([]);
    // RFC 9111: the final answer alone is stored; no field of the 103 is served with it.
    for (const answer of [first, second, hit]) {
      expect(answer.headers.link).toBeUndefined();
      expect(answer.headers["x-hint"]).toBeUndefined();
    }
    expect(origin.seen).toEqual(["GET /page"]);
  });

  it("a 102 (with its fields) and a 1xx Node has no reason phrase for reach the client too; a 100 does not", async () => {
    const origin = await rawOrigin(() => ({
      interim: [
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 102 Processing\r\nX-Progress: 50%\r\n\r\n",
        "HTTP/1.1 150 Something New\r\nX-New: 1\r\n\r\n",
      ],
    }));
    const proxy = await herdless(origin.url);
    const first = await send(proxy.url, "/slow");
    expect(first.interim).toEqual([
      { status: 102, fields: [["x-progress", "50%"]] },
      { status: 150, fields: [["x-new", "1"]] },
    ]);
    expect(first).toMatchObject({ status: 200, body: "page /slow" });
    const hit = await send(proxy.url, "/slow");
    expect(hit).toMatchObject({ interim: [], status: 200 });
    expect(hit.headers["x-progress"]).toBeUndefined();
  });

  it("a 103's hop-by-hop fields, and those its Connection names, stay on the origin's connection", async () => {
    const origin = await rawOrigin(() => ({
      interim: [
        "HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload; as=script\r\nConnection: keep-alive, x-origin-hop\r\n" +
          "Keep-Alive: timeout=5\r\nX-Origin-Hop: secret\r\nProxy-Authenticate: Basic realm=origin\r\nX-End: 1\r\n\r\n",
      ],
    }));
    const proxy = await herdless(origin.url);
    const first = await send(proxy.url, "/hops");
    expect(first.interim).toEqual([
      {
        status: 103,
        fields: [
          ["link", "</a.js>; rel=preload; as=script"],
          ["x-end", "1"],
        ],
      },
    ]);
  });

  it("a relayed request's client gets them (a POST), and so does the leader of a fill whose answer is not stored", async () => {
    const origin = await rawOrigin((method) => ({
      interim: ["HTTP/1.1 103 Early Hints\r\nLink: </form.css>; rel=preload; as=style\r\n\r\n"],
      cacheControl: method === "POST" ? "no-store" : "private",
    }));
    const proxy = await herdless(origin.url);
    const posted = await send(proxy.url, "/form", { method: "POST", body: "a=1" });
    const got = await send(proxy.url, "/account");
    for (const answer of [posted, got]) {
      expect(answer.status).toBe(200);
      expect(answer.interim).toEqual([{ status: 103, fields: [["link", "</form.css>; rel=preload; as=style"]] }]);
    }
    expect(origin.seen).toEqual(["POST /form", "GET /account"]);
  });

  it("an HTTP/1.0 client gets the final answer alone (RFC 9110 §15.2: no 1xx to HTTP/1.0)", async () => {
    const origin = await rawOrigin(() => ({
      interim: ["HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"],
    }));
    const proxy = await herdless(origin.url);
    const answer = await raw(proxy.url, "GET /old HTTP/1.0\r\nHost: shop.test\r\n\r\n");
    expect(answer.text.startsWith("HTTP/1.1 200 ")).toBe(true);
    expect(answer.body).toBe("page /old");
  });

  it("a request pipelined behind one not yet answered gets its final answer whole, no 103 inside its body", async () => {
    const { hold, open } = gate();
    const origin = await rawOrigin((_method, path) =>
      path === "/first"
        ? { interim: [], hold }
        : { interim: ["HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"] },
    );
    const proxy = await herdless(origin.url);
    const { port } = new URL(proxy.url);
    const socket = connect(Number(port), "127.0.0.1");
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    const closed = new Promise((resolve) => socket.on("close", resolve));
    socket.write(
      "GET /first HTTP/1.1\r\nHost: shop.test\r\n\r\nGET /second HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
    );
    await origin.arrived(2);
    // The second's origin answer (and its 103) is in before the first is answered.
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
    open();
    await closed;
    const second = text.slice(text.indexOf("HTTP/1.1", text.indexOf("page /first")));
    expect(second.startsWith("HTTP/1.1 200 ")).toBe(true);
    expect(second.endsWith("\r\n\r\npage /second")).toBe(true);
    expect(text).not.toContain("103 Early Hints");
  });

  it("a hit with Expect: 100-continue pipelined behind a miss gets its answer whole, no 100 inside its body", async () => {
    const { hold, open } = gate();
    const origin = await rawOrigin((_method, path) => (path === "/slow" ? { interim: [], hold } : { interim: [] }));
    const proxy = await herdless(origin.url);
    expect((await send(proxy.url, "/hit", { headers: { host: "shop.test" } })).body).toBe("page /hit");
    const { port } = new URL(proxy.url);
    const socket = connect(Number(port), "127.0.0.1");
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    const closed = new Promise((resolve) => socket.on("close", resolve));
    socket.write(
      "GET /slow HTTP/1.1\r\nHost: shop.test\r\n\r\n" +
        "GET /hit HTTP/1.1\r\nHost: shop.test\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    );
    await origin.arrived(2);
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setImmediate(resolve));
    open();
    await closed;
    const second = text.slice(text.indexOf("HTTP/1.1", text.indexOf("page /slow")));
    expect(second.startsWith("HTTP/1.1 200 ")).toBe(true);
    expect(second.endsWith("\r\n\r\npage /hit")).toBe(true);
    expect(text).not.toContain("100 Continue");
  });

  it("a client gone before its 103 costs nothing: the answer is stored and served to the next", async () => {
    const { hold, open } = gate();
    const origin = await rawOrigin(() => ({
      interim: ["HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"],
      hold,
    }));
    const proxy = await herdless(origin.url);
    const { hostname, port, host } = new URL(proxy.url);
    const gone = connect(Number(port), hostname, () => gone.write(`GET /left HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
    await origin.arrived(1);
    gone.destroy();
    // herdless has seen the client go before the origin's 103 arrives.
    await connections(proxy, 0);
    open();
    const next = await send(proxy.url, "/left");
    // The fill went on for the key: the next client is answered by it (joined or stored), no second origin request.
    expect(next).toMatchObject({ interim: [], status: 200, body: "page /left" });
    expect(origin.seen).toEqual(["GET /left"]);
  });
});

describe("RFC 9110 §15.2 in a Node fleet (Redis)", () => {
  it("the member whose client leads the fill passes the 103 on; a member waiting on that fill gets the final answer alone", async () => {
    const redis = await startRedisServer();
    cleanup.push(() => redis.stop());
    const { hold, open } = gate();
    const origin = await rawOrigin(() => ({
      interim: ["HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"],
      hold,
    }));
    const logger = jsonLogger("silent");
    const config = parseConfig({ origin: { url: origin.url } });
    const prefix = "herdless:interim:";
    const members: RunningServer[] = [];
    for (let i = 0; i < 2; i++) {
      const stack = await redisStack({ config, logger, redisUrl: redis.url, prefix });
      const member = await startServer({ stack, logger, port: 0 });
      cleanup.push(() => member.close());
      members.push(member);
    }
    const observer = new RedisConnection({ url: redis.url });
    cleanup.push(() => observer.close());
    await observer.ready();
    // One site behind a load balancer: one key for both members.
    const headers = { host: "site.test" };
    const leader = send(members[0]!.url, "/page", { headers });
    await origin.arrived(1);
    const waiter = send(members[1]!.url, "/page", { headers });
    const channel = `${prefix}filled:GET http://site.test/page`;
    for (let i = 0; ; i++) {
      const [, waiting] = (await observer.client.pubsub("NUMSUB", channel)) as [string, number];
      if (waiting >= 1) break;
      if (i > 2_000) throw new Error("the second member never waited on the fill");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    open();
    const [first, second] = await Promise.all([leader, waiter]);
    expect(first).toMatchObject({ status: 200, body: "page /page" });
    expect(first.interim).toEqual([{ status: 103, fields: [["link", "</a.css>; rel=preload"]] }]);
    expect(second).toMatchObject({ interim: [], status: 200, body: "page /page" });
    expect(origin.seen).toEqual(["GET /page"]);
  });
});
