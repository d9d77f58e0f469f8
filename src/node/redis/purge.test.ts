import { describe, expect, it } from "vitest";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import { systemClock } from "../../core/clock.ts";
import { RedisConnection } from "./connection.ts";
import { RedisPurgeRegistry } from "./purge.ts";

const redis = redisTestConnection();

async function member(prefix: string) {
  const connection = await redis.connect();
  const registry = new RedisPurgeRegistry({
    connection,
    prefix,
    clock: systemClock,
    keyOf: (url) => [`GET ${url}`],
    propagationMs: 100,
  });
  await registry.start();
  return { registry, close: async () => (registry.stop(), await connection.close()) };
}

describe("Redis purge registry", () => {
  it("a purge is in every member's snapshot by the time it returns", async () => {
    const members = await Promise.all([member("p1:"), member("p1:"), member("p1:")]);
    await members[0]!.registry.purge({ urls: ["https://a.test/x"], soft: true });
    for (const m of members) expect((await m.registry.current()).keys["GET https://a.test/x"]?.soft).toBe(true);
    await members[2]!.registry.purge({ tags: ["t"] });
    for (const m of members) {
      expect((await m.registry.current()).tags.t?.soft).toBe(false);
      expect((await m.registry.current()).keys["GET https://a.test/x"]).toBeDefined();
    }
    await Promise.all(members.map((m) => m.close()));
  });

  it("concurrent purges from several members are all kept", async () => {
    const members = await Promise.all([member("p2:"), member("p2:"), member("p2:")]);
    await Promise.all(members.map((m, i) => m.registry.purge({ tags: [`tag-${i}`] })));
    for (const m of members)
      expect(Object.keys((await m.registry.current()).tags).sort()).toEqual(["tag-0", "tag-1", "tag-2"]);
    await Promise.all(members.map((m) => m.close()));
  });

  it("a member whose re-read timer is stalled (a busy event loop) still holds the bound: past it, a request waits for a read", async () => {
    const members = await Promise.all([member("p4:"), member("p4:")]);
    // The stalled member's timer never fires again; only its bound can save it.
    members[1]!.registry.stop();
    await members[0]!.registry.purge({ urls: ["https://a.test/x"] });
    expect(members[1]!.registry.copy()).toBeUndefined();
    expect((await members[1]!.registry.current()).keys["GET https://a.test/x"]?.soft).toBe(false);
    expect(members[1]!.registry.copy()?.keys["GET https://a.test/x"]).toBeDefined();
    await Promise.all(members.map((m) => m.close()));
  });

  it("purges survive Redis restarting empty (or flushed, or an older replica taking over): the members write them back", async () => {
    const members = await Promise.all([member("p6:"), member("p6:")]);
    await members[0]!.registry.purge({ urls: ["https://a.test/x"] });
    await members[0]!.registry.purge({ tags: ["t"] });
    const wipe = await redis.connect();
    await wipe.run("wipe", (client) => client.del("p6:purges"));
    // Past the bound every member has read Redis again: the purges are still in force, and back in Redis.
    await new Promise((resolve) => setTimeout(resolve, 250));
    for (const m of members) {
      const snapshot = await m.registry.current();
      expect(snapshot.keys["GET https://a.test/x"]?.soft).toBe(false);
      expect(snapshot.tags.t?.soft).toBe(false);
    }
    const [, json] = await wipe.run("read", (client) => client.hmget("p6:purges", "version", "snapshot"));
    expect(JSON.parse(json!)).toMatchObject({
      keys: { "GET https://a.test/x": { soft: false } },
      tags: { t: { soft: false } },
    });
    // A purge after the restart adds to them.
    await members[1]!.registry.purge({ tags: ["u"] });
    for (const m of members) expect(Object.keys((await m.registry.current()).tags).sort()).toEqual(["t", "u"]);
    await wipe.close();
    await Promise.all(members.map((m) => m.close()));
  });

  it("fails clearly when Redis is unreachable", async () => {
    const connection = new RedisConnection({ url: "redis://127.0.0.1:1" });
    const registry = new RedisPurgeRegistry({
      connection,
      prefix: "p3:",
      clock: systemClock,
      keyOf: (u) => [u],
      propagationMs: 100,
    });
    await expect(registry.purge({ all: true })).rejects.toThrow(/redis/);
    await connection.close();
  });
});
