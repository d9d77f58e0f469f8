import { createHash } from "node:crypto";
import { Agent, createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { RedisConnection } from "../../src/node/redis/connection.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import type { Stack } from "../../src/node/stack.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

/*
 * Redis loses its data (FLUSHALL) while the one fill of a page runs: its lease goes with the
 * data. Requests for the page that arrive then, at every process, must not start a second
 * origin request, and the running fill's body must not be cut when it next renews its lease.
 * Real time: the fill outlasts the 2 s wait for new origin permits after the loss.
 */

const HOST = "site.test";
const logger = jsonLogger("silent");
const agent = new Agent({ keepAlive: true, maxSockets: 64 });
/** 200 KB: above what is read whole before answering (64 KiB), so it streams. */
const BODY = Buffer.alloc(200_000, 0);
for (let i = 0; i < BODY.length; i++) BODY[i] = (i * 31 + (i >>> 11)) & 0xff;
const BODY_HASH = createHash("sha256").update(BODY).digest("hex");

let redis: RedisServer | undefined;
let origin: PageOrigin | undefined;
let servers: RunningServer[] = [];
let stacks: Stack[] = [];

afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
  origin?.finish();
  await Promise.all([redis?.stop(), origin?.close()]);
});

interface PageOrigin {
  url: string;
  requests(path: string): number;
  /** Sends the rest of every body held back. */
  finish(): void;
  close(): Promise<void>;
}

/**
 * `/head/*` answers after `headDelayMs`, whole; `/stream/*` sends its head and the first
 * half of the body at once, the rest on {@link PageOrigin.finish}.
 */
async function pageOrigin(headDelayMs: number): Promise<PageOrigin> {
  const byPath = new Map<string, number>();
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    byPath.set(path, (byPath.get(path) ?? 0) + 1);
    req.resume();
    const head = { "content-type": "application/octet-stream", "cache-control": "max-age=60" };
    res.writeHead(200, { ...head, "content-length": String(BODY.length) });
    if (path.startsWith("/head/")) {
      setTimeout(() => res.end(BODY), headDelayMs);
      return;
    }
    res.write(BODY.subarray(0, BODY.length / 2));
    void finished.then(() => res.end(BODY.subarray(BODY.length / 2)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: (path) => byPath.get(path) ?? 0,
    finish,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function fleet(headDelayMs: number): Promise<void> {
  redis = await startRedisServer();
  origin = await pageOrigin(headDelayMs);
  const config = parseConfig({
    origin: { url: origin.url, maxConcurrency: 4, timeoutMs: 8_000, queueTimeoutMs: 15_000 },
    coordinator: { lockLeaseMs: 15_000, waitTimeoutMs: 20_000 },
    fleet: { minProcesses: 3 },
  });
  stacks = await Promise.all(
    [0, 1, 2].map(() => redisStack({ config, logger, redisUrl: redis!.url, prefix: "lease-loss:" })),
  );
  servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
}

interface Answer {
  status: number;
  hash: string;
  bytes: number;
  cacheStatus: string;
}

/** A GET whose body is hashed; `firstBytes` resolves once some of it arrived. */
function get(server: RunningServer, path: string): { firstBytes: Promise<void>; done: Promise<Answer> } {
  let first!: () => void;
  const firstBytes = new Promise<void>((resolve) => (first = resolve));
  const done = new Promise<Answer>((resolve) => {
    const req = request(`${server.url}${path}`, { agent, headers: { host: HOST } }, (res) => {
      const hash = createHash("sha256");
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        first();
        hash.update(chunk);
        bytes += chunk.length;
      });
      const end = () =>
        resolve({
          status: res.statusCode ?? 0,
          hash: hash.digest("hex"),
          bytes,
          cacheStatus: String(res.headers["cache-status"]),
        });
      res.on("end", end);
      // A body cut short: the connection closes before its end.
      res.on("aborted", end);
      res.on("error", () => undefined);
    });
    req.on("error", (error) => resolve({ status: 0, hash: String(error), bytes: 0, cacheStatus: "" }));
    req.end();
  });
  return { firstBytes, done };
}

async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function flushAll(): Promise<void> {
  const admin = new RedisConnection({ url: redis!.url });
  await admin.ready();
  await admin.client.flushall();
  await admin.close();
}

/** Two requests for `path` at each of the three processes. */
const everywhere = (path: string) => [0, 1, 2, 0, 1, 2].map((i) => get(servers[i]!, path).done);

const whole = (a: Answer) => a.status === 200 && a.hash === BODY_HASH;

describe("fleet: Redis loses its data while the one fill of a page runs", () => {
  it(
    "FLUSHALL while the origin has not answered yet: requests for the page at every process join that fill; the origin sees one request, the page is stored",
    { timeout: 60_000 },
    async () => {
      await fleet(4_500);
      const first = get(servers[0]!, "/head/p").done;
      await until("the fill reached the origin", () => origin!.requests("/head/p") === 1);
      // Every process has read Redis's epoch marker since (idle ones do every second): see docs/node.md.
      await sleep(1_200);
      await flushAll();
      const arriving = await Promise.all(everywhere("/head/p"));
      const answers = [await first, ...arriving];
      expect(answers.filter((a) => !whole(a))).toEqual([]);
      expect(origin!.requests("/head/p")).toBe(1);
      const next = await get(servers[1]!, "/head/p").done;
      expect(whole(next) && next.cacheStatus.includes("hit")).toBe(true);
      expect(origin!.requests("/head/p")).toBe(1);
    },
  );

  it.each([
    ["FLUSHALL", flushAll],
    [
      // While Redis is away each process fills on its own (docs/node.md): the requests come once all are back.
      "a restart without persistence",
      async () => {
        await redis!.restart();
        await until("every process is back on Redis", () => stacks.every((stack) => stack.mode() === "redis"));
        await sleep(200);
      },
    ],
  ] as const)(
    "%s while the body streams: its readers get the whole body past the fill's next lease renewal, the requests arriving then join it, the origin sees one request",
    { timeout: 60_000 },
    async (_name, loseData) => {
      await fleet(0);
      const first = get(servers[0]!, "/stream/p");
      await first.firstBytes;
      await sleep(1_200);
      await loseData();
      const arriving = everywhere("/stream/p");
      // Past the fill's next lease renewal (every third of coordinator.lockLeaseMs: 5 s).
      await sleep(5_500);
      origin!.finish();
      const answers = [await first.done, ...(await Promise.all(arriving))];
      expect(answers.filter((a) => !whole(a)).map((a) => [a.status, a.bytes, a.cacheStatus])).toEqual([]);
      expect(origin!.requests("/stream/p")).toBe(1);
      const next = await get(servers[2]!, "/stream/p").done;
      expect(whole(next) && next.cacheStatus.includes("hit")).toBe(true);
      expect(origin!.requests("/stream/p")).toBe(1);
    },
  );
});
