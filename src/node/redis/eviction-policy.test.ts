import type { ChildProcess } from "node:child_process";
import { afterAll, describe, expect, it, vi } from "vitest";
import { findRedisServer, launch, launchOnFreePort, redisTestConnection } from "../../../test/node/redis-server.ts";
import { ManualClock } from "../../core/clock.ts";
import { parseConfig } from "../../core/config.ts";
import { redisStack } from "../fleet-stack.ts";
import { jsonLogger } from "../logger.ts";
import { RedisConnection } from "./connection.ts";
import { warnOnMemoryPolicy } from "./eviction-policy.ts";

const MiB = 1024 * 1024;
const redis = redisTestConnection();

/** A logger that keeps what it writes. */
function recorder() {
  const lines: { level: string; msg: string; policy?: string; maxmemory?: number }[] = [];
  const logger = jsonLogger("debug", (line) => void lines.push(JSON.parse(line) as (typeof lines)[number]));
  return { logger, warnings: () => lines.filter((line) => line.level === "warn") };
}

async function setMemory(maxmemory: string, policy: string): Promise<void> {
  await redis.connection.client.config("SET", "maxmemory", maxmemory);
  await redis.connection.client.config("SET", "maxmemory-policy", policy);
}

describe("start-up check of Redis's maxmemory-policy", () => {
  const spawned: ChildProcess[] = [];
  afterAll(() => spawned.forEach((child) => child.kill("SIGKILL")));

  it("warns of a policy that evicts any key (allkeys-lru), naming the risk and the fix", async () => {
    await setMemory("64mb", "allkeys-lru");
    const { logger, warnings } = recorder();
    await warnOnMemoryPolicy(redis.connection, logger, 32 * MiB);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ policy: "allkeys-lru", maxmemory: 64 * MiB });
    expect(warnings()[0]!.msg).toMatch(/allkeys-lru can evict herdless's coordination keys.*noeviction/);
  });

  it("warns of volatile-* too (the leases and fences carry a TTL), and of a maxmemory below cache.sharedMaxBytes", async () => {
    await setMemory("16mb", "volatile-ttl");
    const { logger, warnings } = recorder();
    await warnOnMemoryPolicy(redis.connection, logger, 32 * MiB);
    expect(warnings().map((line) => line.msg)).toEqual([
      expect.stringMatching(/^redis maxmemory-policy volatile-ttl can evict/),
      expect.stringMatching(/^redis maxmemory is below cache.sharedMaxBytes/),
    ]);
  });

  it("says nothing of noeviction with room for the entries, or of no maxmemory", async () => {
    for (const maxmemory of ["64mb", "0"]) {
      await setMemory(maxmemory, "noeviction");
      const { logger, warnings } = recorder();
      await warnOnMemoryPolicy(redis.connection, logger, 32 * MiB);
      expect(warnings()).toEqual([]);
    }
  });

  it("reads INFO memory where CONFIG is disabled (managed Redis)", async () => {
    const launched = await launchOnFreePort(findRedisServer(), () => [
      "--rename-command",
      "CONFIG",
      "",
      "--maxmemory-policy",
      "allkeys-random",
    ]);
    spawned.push(launched.child);
    const connection = new RedisConnection({ url: `redis://127.0.0.1:${launched.port}` });
    await connection.ready();
    const { logger, warnings } = recorder();
    await warnOnMemoryPolicy(connection, logger, 32 * MiB);
    expect(warnings()).toMatchObject([{ policy: "allkeys-random", maxmemory: 0 }]);
    await connection.close();
  });

  it("never fails start-up: a member started while Redis is unreachable serves, and warns once Redis answers", async () => {
    const binary = findRedisServer();
    const policy = () => ["--maxmemory-policy", "allkeys-lfu"];
    const first = await launchOnFreePort(binary, policy);
    first.child.kill("SIGKILL");
    const { logger, warnings } = recorder();
    const config = parseConfig({ origin: { url: "http://127.0.0.1:1" } });
    const stack = await redisStack({
      config,
      logger,
      clock: new ManualClock(Date.now()),
      redisUrl: `redis://127.0.0.1:${first.port}`,
    });
    expect([stack.mode(), warnings().filter((line) => line.policy)]).toEqual(["degraded", []]);
    spawned.push(await launch(binary, first.port, policy()));
    await vi.waitFor(() => expect(warnings()).toContainEqual(expect.objectContaining({ policy: "allkeys-lfu" })), {
      timeout: 5_000,
    });
    await stack.close();
  });
});
