import { afterAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../core/clock.ts";
import { redisTestConnection, startRedisServer } from "../../../test/node/redis-server.ts";
import { startSentinel, type HaRedis } from "../../../test/node/redis-ha.ts";
import { RedisConnection } from "./connection.ts";
import { RedisLeaseManager } from "./lease.ts";
import { LuaScript } from "./lua-script.ts";
import { FleetMembers } from "./members.ts";

const redis = redisTestConnection();

/** How many commands Redis refused for an unknown script (NOSCRIPT) since it started. */
async function refusedForScript(connection: RedisConnection): Promise<number> {
  const stats = await connection.client.info("errorstats");
  return Number(/errorstat_NOSCRIPT:count=(\d+)/.exec(stats)?.[1] ?? 0);
}

/**
 * What a process does on its way back to Redis: a fill ends (its lease taken and released),
 * then another's lease is extended, written back (the guard saw a loss) and released right
 * behind, and the process beats, all at once. The write-back sent before the release runs
 * before it: the key ends free.
 */
async function wayBack(connection: RedisConnection): Promise<void> {
  const prefix = redis.prefix();
  const leases = new RedisLeaseManager({ connection, prefix, clock: new ManualClock(Date.now()) });
  const members = new FleetMembers({ connection, prefix });
  await leases.release((await leases.acquire("ended", 10_000))!);
  const lease = await leases.acquire("k", 10_000);
  expect(lease).toBeDefined();
  await connection.client.del(leases.leaseKey("k"));
  const sent = [
    leases.extend(lease!, 10_000),
    leases.reassert(Date.now() + 2_000),
    leases.release(lease!),
    members.beat(),
  ];
  await Promise.all(sent);
  expect(await connection.client.exists(leases.leaseKey("k"))).toBe(0);
  expect(await leases.acquire("k", 10_000)).toBeDefined();
}

describe("Lua scripts: loaded on every (re)connect before the first command that runs one", () => {
  let ha: HaRedis | undefined;
  afterAll(() => ha?.stop());

  it("a Redis restarted empty refuses no script (NOSCRIPT): none is sent again behind later commands", async () => {
    const server = await startRedisServer();
    const connection = new RedisConnection({ url: server.url });
    try {
      await connection.ready();
      await wayBack(connection);
      await server.restart();
      await expect.poll(() => connection.healthy, { timeout: 3_000, interval: 10 }).toBe(false);
      await connection.ready(3_000);
      await wayBack(connection);
      // Before, each script's first use after the restart was refused, then sent whole behind
      // what was sent meanwhile (a release: the write-back took the released key back).
      expect(await refusedForScript(connection)).toBe(0);
    } finally {
      await connection.close();
      await server.stop();
    }
  });

  it("a Sentinel failover to a replica whose script cache is empty: the same", async () => {
    ha = await startSentinel();
    const connection = new RedisConnection({ url: ha.url });
    try {
      await connection.ready(5_000);
      await wayBack(connection);
      await ha.failover();
      await expect.poll(() => connection.healthy, { timeout: 15_000, interval: 50 }).toBe(true);
      await wayBack(connection);
      expect(await refusedForScript(connection)).toBe(0);
    } finally {
      await connection.close();
    }
  }, 60_000);
});

describe("Lua scripts: Redis's script cache emptied under a live connection (SCRIPT FLUSH)", () => {
  it("a script Redis refused never runs behind the commands sent after it; the next call finds it loaded again", async () => {
    const { connection } = redis;
    const key = `${redis.prefix()}k`;
    const write = new LuaScript("redis.call('SET', KEYS[1], ARGV[1]) return 1");
    await connection.client.script("FLUSH");
    const refused = write.run(connection.client, [key], ["by the script"]).catch((error: unknown) => error);
    const after = connection.client.set(key, "by the command sent after it");
    expect(String(await refused)).toMatch(/NOSCRIPT/);
    await after;
    await connection.client.ping();
    // Before, the script was sent again whole once refused, behind the SET, and overwrote it.
    expect(await connection.client.get(key)).toBe("by the command sent after it");
    expect(await write.run(connection.client, [key], ["again"])).toBe(1);
    expect(await connection.client.get(key)).toBe("again");
  });

  it("a Redis whose ACL refuses SCRIPT LOAD has the scripts sent whole (EVAL): each runs, none is refused", async () => {
    const server = await startRedisServer();
    const admin = new RedisConnection({ url: server.url });
    await admin.ready();
    await admin.client.call("ACL", "SETUSER", "noload", "on", ">secret", "~*", "&*", "+@all", "-script");
    const connection = new RedisConnection({ url: server.url.replace("redis://", "redis://noload:secret@") });
    try {
      await connection.ready();
      await wayBack(connection);
      expect(await refusedForScript(admin)).toBe(0);
    } finally {
      await Promise.all([connection.close(), admin.close()]);
      await server.stop();
    }
  });
});
