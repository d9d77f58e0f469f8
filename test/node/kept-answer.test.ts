/**
 * The hit path writes a hit's answer as Node wrote it the first time (src/node/kept-answer.ts)
 * instead of calling `writeHead` again. Each test reads the raw bytes a client gets on one
 * connection and compares them with what the engine, which always calls `writeHead`, sends for
 * the same requests: any state of the connection the kept answer does not account for would
 * show as a difference (a missing `Connection: close`, a body after a HEAD, a lost field).
 */
import { createServer, OutgoingMessage, type Server, type ServerResponse } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { startFragileOrigin } from "../../fixtures/fragile-origin.ts";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { createHandler } from "../../src/node/handler.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack, type Stack } from "../../src/node/stack.ts";

const logger = jsonLogger("silent");
const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  vi.restoreAllMocks();
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function setup(
  bodyBytes = 1024,
): Promise<{ stack: Stack; clock: ManualClock; fast: RunningServer; engine: RunningServer }> {
  const origin = await startFragileOrigin({ cacheControl: "max-age=600", bodyBytes });
  cleanup.push(() => origin.close());
  const clock = new ManualClock(Date.now());
  const stack = localStack({ config: parseConfig({ origin: { url: origin.url } }), logger, clock });
  const fast = await startServer({ stack, logger, port: 0 });
  const engine = await startServer({ stack, logger, port: 0, fastHits: false });
  cleanup.push(async () => {
    await fast.close();
    await engine.close();
  });
  // The first request fills the cache; `exchange`'s probe behind it is the first hit.
  await exchange(fast.port, [get("/page")]);
  return { stack, clock, fast, engine };
}

function get(path: string, extra = "", method = "GET", version = "1.1"): { method: string; bytes: string } {
  return { method, bytes: `${method} ${path} HTTP/${version}\r\nHost: site.test\r\n${extra}\r\n` };
}

interface StoreHeader {
  _storeHeader(firstLine: string, headers: unknown): void;
}

interface Exchange {
  answers: string[];
  /** Whether the server closed the connection after the last answer. */
  closed: boolean;
}

/**
 * Writes `requests` in one write on one connection and splits what comes back into one raw
 * answer per request (a HEAD's has no body). Then it sends one more GET: a server that closed
 * the connection behind the last answer does not answer it (`closed`).
 */
function exchange(port: number, requests: { method: string; bytes: string }[]): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = Buffer.alloc(0);
    let answers: string[] | undefined;
    const finish = (closed: boolean): void => {
      socket.destroy();
      if (answers) resolve({ answers, closed });
      else reject(new Error(`incomplete answers: ${received.toString("latin1")}`));
    };
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const split = splitAnswers(received, [...requests, get("/page")]);
      if (!answers && split.length >= requests.length) {
        answers = split.slice(0, requests.length);
        socket.write(get("/page").bytes);
      }
      if (split.length > requests.length) finish(false);
    });
    socket.on("end", () => finish(true));
    socket.on("error", (error: NodeJS.ErrnoException) => (error.code === "ECONNRESET" ? finish(true) : reject(error)));
    socket.write(requests.map((r) => r.bytes).join(""));
  });
}

/** The whole answers in `received`, one per request in turn; an interim answer (100 Continue) joins the final one. */
function splitAnswers(received: Buffer, requests: { method: string }[]): string[] {
  const out: string[] = [];
  let at = 0;
  let pending = "";
  while (out.length < requests.length) {
    const end = received.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const head = received.subarray(at, end + 4).toString("latin1");
    const interim = head.startsWith("HTTP/1.1 1");
    const bodyless = interim || requests[out.length]!.method === "HEAD";
    const length = bodyless ? 0 : Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
    if (received.byteLength < end + 4 + length) break;
    const answer = received.subarray(at, end + 4 + length).toString("latin1");
    at = end + 4 + length;
    if (interim) pending += answer;
    else {
      out.push(pending + answer);
      pending = "";
    }
  }
  return out;
}

describe("a hit's answer written as Node wrote it the first time", () => {
  it("gives every hit on a connection the engine's bytes, and builds a head once per second of Age", async () => {
    const { clock, fast, engine } = await setup();
    // Node's head builder, which writeHead calls (spying on writeHead itself would replace
    // the method the kept answer checks is Node's own, and turn it off).
    const storeHeader = vi.spyOn(OutgoingMessage.prototype as unknown as StoreHeader, "_storeHeader");
    const five = Array.from({ length: 5 }, () => get("/page"));
    // The hit behind setup's fill kept the answer: these five and the probe are written from it.
    const viaFast = await exchange(fast.port, five);
    expect(storeHeader).not.toHaveBeenCalled();
    const viaEngine = await exchange(engine.port, [get("/page")]);
    expect(new Set(viaFast.answers)).toEqual(new Set(viaEngine.answers));
    expect(viaFast.answers[0]).toContain("Connection: keep-alive\r\nKeep-Alive: timeout=65\r\n\r\n");
    // A second later Age and the ttl move: the kept answer is not written again.
    clock.advance(1_000);
    storeHeader.mockClear();
    const later = await exchange(fast.port, [get("/page"), get("/page")]);
    expect(storeHeader).toHaveBeenCalledOnce();
    expect(later.answers[0]).toContain("\r\nage: 1\r\n");
    expect(later.answers[1]).toBe(later.answers[0]);
    expect(later.answers).toEqual((await exchange(engine.port, [get("/page"), get("/page")])).answers);
  });

  it("answers HEAD, HTTP/1.0, a closing request and an Expect among kept hits as the engine does", async () => {
    const { fast, engine } = await setup();
    const requests = [
      get("/page"),
      get("/page", "", "HEAD"),
      get("/page"),
      get("/page", "Connection: keep-alive\r\n", "GET", "1.0"),
      get("/page", "Connection: close\r\n"),
    ];
    const viaFast = await exchange(fast.port, requests);
    expect(viaFast).toEqual(await exchange(engine.port, requests));
    expect(viaFast.answers[1]).toMatch(/content-length: 1024\r\n[^]*\r\n\r\n$/);
    expect(viaFast.answers[4]).toContain("Connection: close\r\n\r\n");
    expect(viaFast.closed).toBe(true);
    // HTTP/1.0 without keep-alive: the answer says close, and the server closes.
    const old = [get("/page"), get("/page", "", "GET", "1.0")];
    const oldFast = await exchange(fast.port, old);
    expect(oldFast).toEqual(await exchange(engine.port, old));
    expect(oldFast.answers[1]).toContain("Connection: close\r\n\r\n");
    expect(oldFast.closed).toBe(true);
    // A GET with Expect that is answered at once: Node closes behind it, whichever way.
    const expecting = [get("/page"), get("/page", "Expect: 100-continue\r\n")];
    const expectFast = await exchange(fast.port, expecting);
    expect(expectFast).toEqual(await exchange(engine.port, expecting));
    expect(expectFast.answers[0]).toContain("Connection: keep-alive\r\n");
  });

  it("says close on a connection's last allowed request, as the engine does", async () => {
    const { fast, engine } = await setup();
    fast.server.maxRequestsPerSocket = 3;
    engine.server.maxRequestsPerSocket = 3;
    const three = [get("/page"), get("/page"), get("/page")];
    const viaFast = await exchange(fast.port, three);
    expect(viaFast).toEqual(await exchange(engine.port, three));
    expect(viaFast.answers[0]).toContain("Keep-Alive: timeout=65, max=3\r\n");
    // Node says close and leaves the closing to the client, whichever way the head was written.
    expect(viaFast.answers[2]).toContain("Connection: close\r\n\r\n");
  });

  it("writes a body too large to join after its kept head, byte for byte", async () => {
    const { fast, engine } = await setup(200_000);
    const two = [get("/page"), get("/page")];
    const viaFast = await exchange(fast.port, two);
    expect(viaFast.answers[1]).toBe(viaFast.answers[0]);
    expect(viaFast.answers[0]!.length).toBeGreaterThan(200_000);
    expect(viaFast).toEqual(await exchange(engine.port, two));
  });

  it("never writes one response's application fields into another's hit, nor leaves them out", async () => {
    const { stack } = await setup();
    const handler = createHandler({ stack });
    // An application in front of herdless sets a signed-in visitor's session cookie.
    const app: Server = createServer((req, res) => {
      if (req.headers["x-user"] === "victim") res.setHeader("set-cookie", "session=victim-secret");
      handler(req, res);
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise((resolve) => app.close(() => resolve())));
    const { port } = app.address() as AddressInfo;
    const asVictim = get("/page", "X-User: victim\r\n");
    const victim = await exchange(port, [asVictim, asVictim]);
    const attacker = await exchange(port, [get("/page"), get("/page"), get("/page")]);
    const victimAgain = await exchange(port, [asVictim, asVictim]);
    for (const answer of [...victim.answers, ...victimAgain.answers]) {
      expect(answer).toContain("set-cookie: session=victim-secret\r\n");
      expect(answer).toContain("cache-status: herdless; hit");
    }
    for (const answer of attacker.answers) expect(answer).not.toContain("victim-secret");
  });

  it("leaves every hit to an embedding application's wrapped writeHead and end", async () => {
    const { stack } = await setup();
    const handler = createHandler({ stack });
    // As middleware does: a hook run as each head goes out (a timing, a cookie set only on
    // some answers), and the body's bytes counted as they are written.
    let heads = 0;
    let bodyBytes = 0;
    const app: Server = createServer((req, res) => {
      const { writeHead, end } = res;
      res.writeHead = function (this: ServerResponse, ...args: Parameters<typeof writeHead>) {
        heads++;
        return writeHead.apply(this, args);
      } as typeof writeHead;
      res.end = function (this: ServerResponse, ...args: unknown[]) {
        if (Buffer.isBuffer(args[0])) bodyBytes += args[0].byteLength;
        return (end as (...a: unknown[]) => ServerResponse).apply(this, args);
      } as typeof end;
      handler(req, res);
    });
    await new Promise<void>((resolve) => app.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise((resolve) => app.close(() => resolve())));
    const { port } = app.address() as AddressInfo;
    const { answers } = await exchange(port, [get("/page"), get("/page"), get("/page")]);
    expect(answers).toHaveLength(3);
    // Three answers and exchange's probe: four heads, 1,024 bytes of body each.
    expect([heads, bodyBytes]).toEqual([4, 4 * 1024]);
  });
});
