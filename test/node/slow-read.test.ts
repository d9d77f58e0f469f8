import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, sendAsTaken, servingOrigin } from "./attack-kit.ts";
import { readAheadHeldBytes } from "../../src/core/origin/read-ahead.ts";

/**
 * Slow reads: an attacker asks for a body herdless does not keep whole (relayed, uncacheable,
 * or too large to store) and reads it a little at a time, never idle long enough to be cut.
 * The origin is read only as fast as the client takes it, so each such download held an
 * origin permit for `origin.streamTimeoutMs` (5 minutes), and `origin.maxConcurrency` of them
 * made every visitor's cold miss queue, then `503`. The victim's cold miss must be served.
 */
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});

const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 7);

/** An origin whose `/file?mib=N&cc=…` is N MiB under that Cache-Control, sent as fast as it is taken; `/page` is small. */
async function fileOrigin(): Promise<string> {
  return servingOrigin((req, res) => {
    req.resume();
    const url = new URL(req.url ?? "/", "http://origin.test");
    if (url.pathname !== "/file") return void res.writeHead(200, { "cache-control": "max-age=60" }).end("page");
    const size = Number(url.searchParams.get("mib")) * MiB;
    res.writeHead(200, {
      "cache-control": url.searchParams.get("cc") ?? "max-age=60",
      "content-length": String(size),
    });
    sendAsTaken(res, size, CHUNK);
  }, cleanup);
}

/**
 * A client that sends `request`, then takes about `perTick` bytes every 100 ms (what arrived
 * meanwhile, up to that): never idle, always slow.
 */
function trickler(base: string, request: string, perTick: number): { started: Promise<void>; received: () => number } {
  let received = 0;
  let thisTick = 0;
  let started!: () => void;
  const head = new Promise<void>((resolve) => (started = resolve));
  const socket: Socket = connect(Number(new URL(base).port), "127.0.0.1", () => socket.write(request));
  socket.on("data", (data: Buffer) => {
    received += data.length;
    thisTick += data.length;
    started();
    if (thisTick >= perTick) socket.pause();
  });
  socket.on("error", () => undefined);
  const every = setInterval(() => {
    thisTick = 0;
    socket.resume();
  }, 100);
  cleanup.push(async () => {
    clearInterval(every);
    socket.destroy();
  });
  return { started: head, received: () => received };
}

const attacks = (mib: number) =>
  [
    [
      "relayed alone (a Cookie)",
      `GET /file?mib=${mib} HTTP/1.1\r\nHost: shop.test\r\nCookie: session=attacker\r\n\r\n`,
    ],
    ["an uncacheable answer (private)", `GET /file?mib=${mib}&cc=private HTTP/1.1\r\nHost: shop.test\r\n\r\n`],
    [
      "a POST's answer",
      `POST /file?mib=${mib} HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nhi`,
    ],
  ] as const;

describe("slow readers of bodies herdless does not keep (Node)", () => {
  it.each(attacks(6))(
    "readers trickling %s that fits the read-ahead hold no origin permit: the victim's cold miss is served at once",
    async (_, request) => {
      const base = (await fileOrigin()) as string;
      const cache = await herdless(base, {
        origin: { maxConcurrency: 2, queueTimeoutMs: 1_500 },
      });
      cleanup.push(() => cache.close());
      // As many attackers as the cap, each with a different body.
      const attackers = [request, request.replace("mib=6", "mib=6&x=2")].map((r) => trickler(cache.base, r, 16 * 1024));
      await Promise.all(attackers.map((a) => a.started));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = performance.now();
      const victim = await get(cache.base, "/page");
      expect([victim.status, victim.headers["cache-status"]]).toEqual([
        200,
        "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
      ]);
      // Not after a queue wait: the origin finished the attackers' bodies, their permits are free.
      expect(performance.now() - started).toBeLessThan(1_000);
      // The attackers are not cut: they read slowly, and their bodies are held for them.
      for (const attacker of attackers) expect(attacker.received()).toBeLessThan(6 * MiB);
      expect(readAheadHeldBytes()).toBeGreaterThan(0);
      expect(readAheadHeldBytes()).toBeLessThanOrEqual(2 * (4 * MiB + CHUNK.length));
    },
  );

  it.each([
    ...attacks(64),
    ["shared but too large to keep", "GET /file?mib=64 HTTP/1.1\r\nHost: shop.test\r\n\r\n"] as const,
  ])(
    "readers trickling %s past the read-ahead are cut once a cold miss queues behind them: the victim is served",
    async (_, request) => {
      const base = (await fileOrigin()) as string;
      const cache = await herdless(base, {
        origin: { maxConcurrency: 2, queueTimeoutMs: 6_000, streamIdleTimeoutMs: 2_000 },
      });
      cleanup.push(() => cache.close());
      const perTick = Number(process.env.PER_TICK ?? 100 * 1024);
      const attackers = [request, request.replace("mib=64", "mib=64&x=2")].map((r) => trickler(cache.base, r, perTick));
      await Promise.all(attackers.map((a) => a.started));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const victim = await get(cache.base, "/page");
      expect([victim.status, victim.headers["cache-status"]]).toEqual([
        200,
        "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
      ]);
    },
  );
});
