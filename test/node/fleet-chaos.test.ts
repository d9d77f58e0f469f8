import { request } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { ManualClock, systemClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { primaryKey } from "../../src/core/http/key.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { RedisConnection } from "../../src/node/redis/connection.ts";
import { RedisLeaseManager } from "../../src/node/redis/lease.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

const HOST = "site.test";
const PREFIX = "chaos:";
const logger = jsonLogger("silent");

let redis: RedisServer;
let origin: FragileOrigin;
let servers: RunningServer[];
let clock: ManualClock;

beforeEach(async () => {
  [redis, origin] = await Promise.all([
    startRedisServer(),
    startFragileOrigin({ cacheControl: "max-age=60, stale-if-error=600", latencyMs: 30 }),
  ]);
  clock = new ManualClock(Date.now());
  const config = parseConfig({
    // Generous against a loaded 2-core machine: a 30 ms origin took over 200 ms there, and a
    // live holder's call must not time out; the dead holder's lease still lapses in 3.5 s.
    origin: { url: origin.url, timeoutMs: 3_000 },
    coordinator: { lockLeaseMs: 3_500, waitTimeoutMs: 8_000 },
  });
  const stacks = await Promise.all(
    [0, 1, 2].map(() => redisStack({ config, logger, clock, redisUrl: redis.url, prefix: PREFIX })),
  );
  servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
});

afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await Promise.all([redis.stop(), origin.close()]);
});

function get(server: RunningServer, path: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(`${server.url}${path}`, { headers: { host: HOST } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("fleet chaos", () => {
  it("a lease holder that dies mid-fetch never wedges the key: it recovers after the lease, with one origin request", async () => {
    // A fleet member took the key's lease and died before it fetched or released.
    const connection = new RedisConnection({ url: redis.url });
    await connection.ready();
    const key = primaryKey(new URL(`http://${HOST}/wedged`), {
      ignoreQuery: ["utm_*", "fbclid", "gclid"],
      ignoreAllQuery: false,
    });
    const dead = await new RedisLeaseManager({ connection, prefix: PREFIX, clock: systemClock }).acquire(key, 400);
    expect(dead).toBeDefined();
    await connection.close();

    const answers = await Promise.all(servers.flatMap((s) => Array.from({ length: 20 }, () => get(s, "/wedged"))));
    expect(answers.every((a) => a.status === 200 && a.body === answers[0]!.body)).toBe(true);
    expect(origin.stats().requests).toBe(1);
  });

  it("a failed fetch is shared with the waiters in the other processes: stale served everywhere, one origin request, no wait for the lease", async () => {
    const warm = await Promise.all(servers.map((s) => get(s, "/page")));
    expect(origin.stats().requests).toBe(1);
    origin.set({ status: 503 });
    clock.advance(120_000);
    const answers = await Promise.all(servers.flatMap((s) => Array.from({ length: 20 }, () => get(s, "/page"))));
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(a.body).toBe(warm[0]!.body);
    }
    // One fetch for the 60 requests; one sick status is asked again once before the key backs
    // off (key-backoff.ts), so a request that came after the first fetch ended may make a second.
    const requests = origin.stats().requests;
    expect(requests).toBeGreaterThanOrEqual(2);
    expect(requests).toBeLessThanOrEqual(3);
  });
});
