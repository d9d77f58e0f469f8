import { describe, expect, it, vi } from "vitest";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import { systemClock } from "../../core/clock.ts";
import { PurgeUnconfirmedError } from "../../core/admin/purge.ts";
import { RedisConnection, type RedisClient } from "./connection.ts";
import { FleetMembers } from "./members.ts";
import { RedisPurgeRegistry } from "./purge.ts";

const redis = redisTestConnection();

/** A fleet process: its own connection, its heartbeat and its purge registry. */
async function member(prefix: string, propagationMs = 100) {
  const connection = await redis.connect({ commandTimeoutMs: 200 });
  const members = new FleetMembers({ connection, prefix });
  await members.start();
  const registry = new RedisPurgeRegistry({
    connection,
    prefix,
    clock: systemClock,
    keyOf: (url) => [`GET ${url}`],
    members,
    propagationMs,
  });
  await registry.start();
  return {
    registry,
    members,
    connection,
    close: async () => (registry.stop(), await members.stop(), await connection.close()),
  };
}

/** Makes Redis stall (CLIENT PAUSE) the moment `m`'s purge list write is done, on its own connection, before anyone reads it. */
function stallRightAfterPurgeWrite(m: { connection: RedisConnection }, stallMs: number): void {
  const run = m.connection.run.bind(m.connection);
  vi.spyOn(m.connection, "run").mockImplementation(<T>(what: string, command: (client: RedisClient) => Promise<T>) =>
    run(what, (client) => {
      const reply = command(client);
      if (what === "purge") void client.call("CLIENT", "PAUSE", String(stallMs), "ALL").catch(() => undefined);
      return reply;
    }),
  );
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

  it("a Redis that stalls right after the purge was written: the purge is not done until the others hold it", async () => {
    const members = await Promise.all([member("p7:", 300), member("p7:", 300)]);
    stallRightAfterPurgeWrite(members[0]!, 1_000);
    await members[0]!.registry.purge({ urls: ["https://a.test/x"] });
    // The other member's reads timed out in the stall: it serves from the last list it read,
    // which must by now be one with the purge (a timer said done while it had not read it).
    expect((await members[1]!.registry.current()).keys["GET https://a.test/x"]?.soft).toBe(false);
    await Promise.all(members.map((m) => m.close()));
  });

  it("a Redis that stalls for longer than the purge waits: the purge says it is not confirmed, and by whom", async () => {
    const members = await Promise.all([member("p8:"), member("p8:")]);
    stallRightAfterPurgeWrite(members[0]!, 4_000);
    const failed = await members[0]!.registry.purge({ urls: ["https://a.test/x"] }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(PurgeUnconfirmedError);
    expect((failed as Error).message).toMatch(/^purge recorded, but/);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await Promise.all(members.map((m) => m.close()));
  });

  it("a live member that has not read the purge is named in the refusal; one that left is not waited for", async () => {
    const members = await Promise.all([member("p9:"), member("p9:"), member("p9:")]);
    // A busy event loop: member 1 never re-reads on its timer, but still beats.
    members[1]!.registry.stop();
    await members[2]!.close();
    const failed = await members[0]!.registry.purge({ tags: ["t"] }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(PurgeUnconfirmedError);
    expect((failed as PurgeUnconfirmedError).unconfirmed).toEqual([members[1]!.members.id]);
    await Promise.all(members.slice(0, 2).map((m) => m.close()));
  });

  it("a member whose re-read timer is stalled (a busy event loop) still holds the bound: past it, a request waits for a read", async () => {
    const members = await Promise.all([member("p4:"), member("p4:")]);
    // The stalled member's timer never fires again; only its bound can save it.
    members[1]!.registry.stop();
    await members[0]!.registry.purge({ urls: ["https://a.test/x"] }).catch(() => undefined);
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

  it("attack: Redis loses a purge and another process purges before the first reads again: neither purge is lost, nor confirmed before both hold it", async () => {
    const x = "GET https://a.test/x";
    const z = "GET https://a.test/z";
    const a = await member("p10:");
    await a.registry.purge({ urls: ["https://a.test/x"] });
    // A reads once more (its timer, a third of the bound): it records that it holds the list with X.
    await new Promise((resolve) => setTimeout(resolve, 50));
    // A's event loop is busy: it does not read again until the end of the attack.
    a.registry.stop();
    const wipe = await redis.connect();
    await wipe.run("wipe", (client) => client.del("p10:purges"));
    // B joins behind the loss, and purges Z: Redis's list is again at A's version number.
    const b = await member("p10:");
    let answered = false;
    const purgeZ = b.registry.purge({ urls: ["https://a.test/z"] }).then(() => (answered = true));
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(answered).toBe(false);
    // A's loop is back: past its bound, the next request reads the list first.
    await new Promise((resolve) => setTimeout(resolve, 60));
    const seenByA = await a.registry.current();
    expect(seenByA.keys[x]?.soft).toBe(false);
    expect(seenByA.keys[z]?.soft).toBe(false);
    await a.registry.start();
    await purgeZ;
    // B learns X back within its bound, and Redis holds both.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const seenByB = await b.registry.current();
    expect(seenByB.keys[x]?.soft).toBe(false);
    expect(seenByB.keys[z]?.soft).toBe(false);
    const [, , json] = await wipe.run("read", (client) => client.hmget("p10:purges", "version", "token", "snapshot"));
    expect(Object.keys((JSON.parse(json!) as { keys: object }).keys).sort()).toEqual([x, z]);
    await wipe.close();
    await Promise.all([a, b].map((m) => m.close()));
  });

  it("fails clearly when Redis is unreachable", async () => {
    const connection = new RedisConnection({ url: "redis://127.0.0.1:1" });
    const registry = new RedisPurgeRegistry({
      connection,
      prefix: "p3:",
      clock: systemClock,
      keyOf: (u) => [u],
      members: new FleetMembers({ connection, prefix: "p3:" }),
      propagationMs: 100,
    });
    await expect(registry.purge({ all: true })).rejects.toThrow(/redis/);
    await connection.close();
  });
});
