import { Agent, request } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { RedisConnection } from "../../src/node/redis/connection.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

/*
 * Redis loses its data while origin requests run: the permits of the fleet's cap go with it.
 * The origin (counted where requests arrive) must never see more than maxConcurrency, and the
 * requests that were running must still answer 200. Real time: the origin takes 3.5 s, past a
 * permit's renewal, so a holder learns of the loss while its request runs.
 */

const HOST = "site.test";
const MAX = 4;
const logger = jsonLogger("silent");
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

let redis: RedisServer;
let origin: FragileOrigin;
let servers: RunningServer[] = [];

beforeEach(async () => {
  [redis, origin] = await Promise.all([
    startRedisServer(),
    startFragileOrigin({ cacheControl: "max-age=60", latencyMs: 3_500 }),
  ]);
  const config = parseConfig({
    origin: { url: origin.url, maxConcurrency: MAX, timeoutMs: 5_000, queueTimeoutMs: 15_000 },
    // A request queued for a slot holds its key's lease meanwhile: the lease outlasts the wait and the call.
    coordinator: { lockLeaseMs: 15_000, waitTimeoutMs: 20_000 },
    fleet: { minProcesses: 3 },
  });
  const stacks = await Promise.all(
    [0, 1, 2].map(() => redisStack({ config, logger, redisUrl: redis.url, prefix: "loss:" })),
  );
  servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
});

afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await Promise.all([redis.stop(), origin.close()]);
});

function get(server: RunningServer, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request(`${server.url}${path}`, { agent, headers: { host: HOST } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", (error) => resolve({ status: 0, body: String(error) }));
    req.end();
  });
}

async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** maxConcurrency requests hold the cap through one process; Redis loses its data; twice as many arrive at the others. */
async function lossUnderLoad(loseData: () => Promise<void>) {
  const running = Array.from({ length: MAX }, (_, i) => get(servers[0]!, `/running/${i}`));
  await until("the first requests hold every slot at the origin", () => origin.stats().inFlight === MAX);
  // Every process has read the others' permits since (idle ones do every second): see docs/node.md.
  await new Promise((resolve) => setTimeout(resolve, 1_200));
  await loseData();
  const arriving = Array.from({ length: 2 * MAX }, (_, i) => get(servers[1 + (i % 2)]!, `/arriving/${i}`));
  return { running: await Promise.all(running), arriving: await Promise.all(arriving) };
}

describe("fleet: Redis loses its data while origin requests run", () => {
  it(
    "FLUSHALL: the origin never sees more than maxConcurrency, and the running requests answer 200",
    { timeout: 60_000 },
    async () => {
      const admin = new RedisConnection({ url: redis.url });
      await admin.ready();
      const { running, arriving } = await lossUnderLoad(async () => void (await admin.client.flushall()));
      await admin.close();
      expect(running.map((a) => a.status)).toEqual(Array(MAX).fill(200));
      expect(arriving.map((a) => a.status)).toEqual(Array(2 * MAX).fill(200));
      expect(origin.stats().peakInFlight).toBeLessThanOrEqual(MAX);
      expect(origin.stats().requests).toBe(3 * MAX);
    },
  );

  it("a restart without persistence: the same", { timeout: 60_000 }, async () => {
    const { running, arriving } = await lossUnderLoad(() => redis.restart());
    expect(running.map((a) => a.status)).toEqual(Array(MAX).fill(200));
    expect(arriving.map((a) => a.status)).toEqual(Array(2 * MAX).fill(200));
    expect(origin.stats().peakInFlight).toBeLessThanOrEqual(MAX);
    expect(origin.stats().requests).toBe(3 * MAX);
  });
});
