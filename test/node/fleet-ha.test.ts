import { Agent, request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import type { Stack } from "../../src/node/stack.ts";
import { startCluster, startSentinel, type HaRedis } from "./redis-ha.ts";

/*
 * A 3-process fleet on highly available Redis, under load, through a failover: the master
 * is killed and a replica takes over. Every key had a stored copy, so every answer must be
 * a 200; the origin (it crashes above 4 in flight) must never see more than maxConcurrency.
 */

const HOST = "site.test";
const KEYS = Array.from({ length: 10 }, (_, i) => `/page/${i}`);
const logger = jsonLogger("silent");
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

let ha: HaRedis | undefined;
let origin: FragileOrigin | undefined;
let servers: RunningServer[] = [];
let stacks: Stack[] = [];

afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await Promise.all([ha?.stop(), origin?.close()]);
  servers = [];
  stacks = [];
});

function get(base: string, path: string): Promise<{ status: number; body: string; cacheStatus: string }> {
  return new Promise((resolve) => {
    const req = request(`${base}${path}`, { agent, headers: { host: HOST } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body, cacheStatus: String(res.headers["cache-status"] ?? "") }),
      );
    });
    req.on("error", (error) => resolve({ status: 0, body: String(error), cacheStatus: "" }));
    req.end();
  });
}

async function until(what: string, condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function fleetOn(redis: HaRedis): Promise<string[]> {
  ha = redis;
  origin = await startFragileOrigin({
    cacheControl: "max-age=1, stale-while-revalidate=60, stale-if-error=3600",
    latencyMs: 20,
    crashAbove: 4,
  });
  const config = parseConfig({
    origin: { url: origin.url, maxConcurrency: 4, timeoutMs: 1_000, queueTimeoutMs: 1_000 },
    coordinator: { lockLeaseMs: 2_000, waitTimeoutMs: 3_000 },
    breaker: { failureThreshold: 2, probeIntervalMs: 500 },
    fleet: { minProcesses: 3 },
  });
  stacks = await Promise.all([0, 1, 2].map(() => redisStack({ config, logger, redisUrl: redis.url, prefix: "ha:" })));
  servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
  const urls = servers.map((s) => s.url);
  // Every process has served every key once: each holds its own copy, as under real load.
  // (Setup on a loaded machine: a cold fetch past origin.timeoutMs is asked again.)
  for (const url of urls)
    for (const path of KEYS) {
      let status = 0;
      for (let attempt = 0; attempt < 3 && status !== 200; attempt++) status = (await get(url, path)).status;
      expect(status).toBe(200);
    }
  return urls;
}

/** 24 request loops over the fleet while `fault` runs, and 1 s past it. */
async function loadThrough(urls: string[], fault: () => Promise<void>): Promise<string[]> {
  const statuses: string[] = [];
  let stop = false;
  const loop = async (n: number) => {
    for (let i = n; !stop; i += 24) {
      const answer = await get(urls[i % 3]!, KEYS[i % KEYS.length]!);
      statuses.push(answer.status === 200 ? "200" : `${answer.status} ${answer.cacheStatus}`);
    }
  };
  const loops = Array.from({ length: 24 }, (_, n) => loop(n));
  await new Promise((resolve) => setTimeout(resolve, 500));
  await fault();
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  stop = true;
  await Promise.all(loops);
  return statuses;
}

/** After the failover the fleet coordinates again: a cold key asked of all three at once costs one origin request. */
async function coordinationIsBack(urls: string[]): Promise<void> {
  await until("every process is back on Redis", () => stacks.every((s) => s.mode() === "redis"));
  const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => get(urls[i % 3]!, "/cold")));
  expect(answers.every((a) => a.status === 200 && a.body === answers[0]!.body)).toBe(true);
  expect(origin!.stats().byPath["/cold"]).toBe(1);
}

describe("fleet on highly available Redis, through a failover under load", () => {
  it("Sentinel: the master is killed, the replica promoted; 0 errors, the origin cap holds, one fetch per key after", async () => {
    const urls = await fleetOn(await startSentinel());
    const statuses = await loadThrough(urls, () => ha!.failover());
    expect(statuses.length).toBeGreaterThan(100);
    expect(statuses.filter((s) => s !== "200")).toEqual([]);
    expect(origin!.stats().peakInFlight).toBeLessThanOrEqual(4);
    expect(origin!.stats().crashes).toBe(0);
    await coordinationIsBack(urls);
  }, 60_000);

  it("Cluster of 3 masters: the master of the guard's slot is killed, its replica promoted; same outcome", async () => {
    const urls = await fleetOn(await startCluster());
    const statuses = await loadThrough(urls, () => ha!.failover());
    expect(statuses.length).toBeGreaterThan(100);
    expect(statuses.filter((s) => s !== "200")).toEqual([]);
    expect(origin!.stats().peakInFlight).toBeLessThanOrEqual(4);
    expect(origin!.stats().crashes).toBe(0);
    await coordinationIsBack(urls);
  }, 60_000);
});
