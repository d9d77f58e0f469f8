import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack, type FleetStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { RedisConnection } from "../../src/node/redis/connection.ts";
import { sharedMaxBytes, StoreBound } from "../../src/node/redis/store-bound.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { send, type Answer } from "./deployment.ts";
import { findRedisServer, launchOnFreePort } from "./redis-server.ts";

const KiB = 1024;
const FLOOD = 1_200;
/** Each member's near tier; the shared tier's bound is derived from it: 4 × 64 KiB. */
const config = parseConfig({
  origin: { url: "http://127.0.0.1:1" },
  cache: { maxBytes: 64 * KiB, maxEntryBytes: 64 * KiB },
  breaker: { failureThreshold: 100_000 },
});
const BOUND = sharedMaxBytes(config);
const PREFIX = `herdless:${config.cache.name}:`;

/**
 * The attack on a fleet's shared tier: distinct URLs the origin answers cacheably (a query
 * string it ignores), each stored in Redis for a day. Redis runs as docs/node.md recommends:
 * a maxmemory with `noeviction`, so Redis never drops a lease or a permit on its own. Before
 * the bound, the flood filled it, and every write after (the leases too) failed: the fleet
 * fell back to one origin request per member per key.
 */
describe("a flood of distinct cacheable URLs through a fleet: Redis keeps within cache.sharedMaxBytes", () => {
  let redis: ChildProcess;
  let connection: RedisConnection;
  let origin: FragileOrigin;
  let stacks: FleetStack[];
  let servers: RunningServer[];
  let urls: string[];

  beforeAll(async () => {
    const launched = await launchOnFreePort(findRedisServer(), () => [
      "--maxmemory",
      "4mb",
      "--maxmemory-policy",
      "noeviction",
    ]);
    redis = launched.child;
    const redisUrl = `redis://127.0.0.1:${launched.port}`;
    origin = await startFragileOrigin({ cacheControl: "max-age=600", bodyBytes: 2 * KiB });
    const own = { ...config, origin: { ...config.origin, url: origin.url } };
    const clock = new ManualClock(Date.now());
    const logger = jsonLogger("silent");
    stacks = await Promise.all([0, 1, 2].map(() => redisStack({ config: own, logger, clock, redisUrl })));
    servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
    urls = servers.map((server) => server.url);
    connection = new RedisConnection({ url: redisUrl });
    await connection.ready();
  }, 30_000);

  afterAll(async () => {
    await Promise.all(servers.map((server) => server.close()));
    await connection.close();
    await origin.close();
    redis.kill("SIGKILL");
  });

  /** Every stored entry's bytes in Redis, as Redis counts them (MEMORY USAGE), chunks included. */
  async function storedBytes(): Promise<{ bytes: number; entries: number }> {
    const client = connection.client;
    const keys = [...(await client.keys(`${PREFIX}entry:*`)), ...(await client.keys(`${PREFIX}chunk:*`))];
    const sizes = await Promise.all(keys.map((key) => client.memory("USAGE", key)));
    return { bytes: sizes.reduce<number>((sum, size) => sum + (size ?? 0), 0), entries: keys.length };
  }

  const origins = (path: string) => origin.stats().byPath[path] ?? 0;

  it("the entries stay under the bound, the newest pages still hit, the victim's page is at worst a miss, one origin request per key after it", async () => {
    expect(BOUND).toBe(256 * KiB);
    // The victim's popular page, stored before the flood.
    expect((await send(urls[0]!, "/popular")).status).toBe(200);

    // The attacker: 1,200 distinct URLs (~2.5 KB each stored, ~3 MB in all: twelve bounds).
    for (let n = 0; n < FLOOD; n += 30)
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => send(urls[(n + i) % 3]!, `/page?x=${n + i}`).catch(() => undefined)),
      );

    // Each member accounts for its writes behind their answers.
    await Promise.all(stacks.map((stack) => stack.settled()));
    const stored = await storedBytes();
    const recorded = await new StoreBound({ connection, prefix: PREFIX, maxBytes: BOUND }).usage();
    expect.soft(stored.bytes).toBeLessThanOrEqual(BOUND);
    expect.soft(recorded.bytes).toBeLessThanOrEqual(BOUND);
    // What Redis really spends on them is within what the bound charges.
    expect.soft(stored.bytes).toBeLessThanOrEqual(recorded.bytes);
    expect.soft(stored.entries).toBeGreaterThan(30);

    // The most recently written pages are still in Redis: another member serves them without the origin.
    for (let n = FLOOD - 5; n < FLOOD; n++) {
      const path = `/page?x=${n}`;
      const before = origins(path);
      const answer = await send(urls[(n + 1) % 3]!, path);
      expect.soft([answer.status, answer.cacheStatus]).toEqual([200, expect.stringMatching(/^herdless; hit/)]);
      expect.soft(origins(path)).toBe(before);
    }

    origin.set({ latencyMs: 100 });
    // The victim's page, written long before: a miss at worst, never an error; a herd on it is one origin request.
    const popular = origins("/popular");
    const herd = async (path: string): Promise<Answer[]> =>
      Promise.all(Array.from({ length: 30 }, (_, i) => send(urls[i % 3]!, path)));
    const victims = await herd("/popular");
    expect.soft(victims.map((answer) => answer.status)).toEqual(Array(30).fill(200));
    expect.soft(new Set(victims.map((answer) => answer.body)).size).toBe(1);
    expect.soft(origins("/popular") - popular).toBeLessThanOrEqual(1);
    // A new page's herd through every member: the leases still work, one origin request.
    const fresh = await herd("/fresh");
    expect.soft(fresh.map((answer) => answer.status)).toEqual(Array(30).fill(200));
    expect.soft(origins("/fresh")).toBe(1);
  }, 120_000);
});
