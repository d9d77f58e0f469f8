import { describe, expect, it } from "vitest";
import { ManualClock } from "../../core/clock.ts";
import { isHerdlessError } from "../../core/errors.ts";
import { redisTestConnection, startRedisServer } from "../../../test/node/redis-server.ts";
import type { Redis } from "ioredis";
import { RedisConnection } from "./connection.ts";
import { RedisLeaseManager } from "./lease.ts";
import { loadScripts } from "./lua-script.ts";

const T0 = 1_700_000_000_000;
const redis = redisTestConnection();

function manager(clock = new ManualClock(T0)) {
  return { clock, leases: new RedisLeaseManager({ connection: redis.connection, clock, prefix: redis.prefix() }) };
}

describe("RedisLeaseManager", () => {
  it("acquires, extends and releases; expiresAt follows the clock", async () => {
    const { clock, leases } = manager();
    const lease = await leases.acquire("k", 10_000);
    expect(lease).toMatchObject({ key: "k", expiresAt: T0 + 10_000 });
    const pttl = await redis.connection.client.pttl(leases.leaseKey("k"));
    expect(pttl).toBeGreaterThan(9_000);
    clock.advance(5_000);
    expect(await leases.extend(lease!, 20_000)).toBe(true);
    expect(lease!.expiresAt).toBe(T0 + 25_000);
    expect(await redis.connection.client.pttl(leases.leaseKey("k"))).toBeGreaterThan(19_000);
    expect(await leases.release(lease!)).toBe(true);
    expect(await redis.connection.client.exists(leases.leaseKey("k"))).toBe(0);
    expect(await leases.release(lease!)).toBe(false);
  });

  it("refuses a second acquirer while the lease is held, across managers", async () => {
    const { leases } = manager();
    const other = new RedisLeaseManager({
      connection: redis.connection,
      prefix: leases.leaseKey("").replace(/lease:{}$/, ""),
    });
    const first = await leases.acquire("k", 10_000);
    expect(first).toBeDefined();
    expect(await other.acquire("k", 10_000)).toBeUndefined();
    expect(await leases.acquire("other-key", 10_000)).toBeDefined();
    await leases.release(first!);
    expect(await other.acquire("k", 10_000)).toBeDefined();
  });

  it("lets the lease expire on Redis's clock, then hands it out with a higher token", async () => {
    const { leases } = manager();
    const first = await leases.acquire("k", 200);
    expect(await leases.acquire("k", 200)).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 250));
    const second = await leases.acquire("k", 10_000);
    expect(second).toBeDefined();
    expect(second!.token).toBeGreaterThan(first!.token);
    // The expired holder can neither extend nor release the new holder's lease.
    expect(await leases.extend(first!, 10_000)).toBe(false);
    expect(await leases.release(first!)).toBe(false);
    expect(await redis.connection.client.get(leases.leaseKey("k"))).toBe(String(second!.token));
  });

  it("issues strictly increasing tokens, and a refused acquire burns none", async () => {
    const { leases } = manager();
    const tokens: number[] = [];
    for (let i = 0; i < 20; i++) {
      const lease = await leases.acquire("k", 10_000);
      expect(await leases.acquire("k", 10_000)).toBeUndefined();
      expect(await redis.connection.client.get(leases.fenceKey("k"))).toBe(String(lease!.token));
      tokens.push(lease!.token);
      await leases.release(lease!);
    }
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]!);
    expect(tokens.every(Number.isSafeInteger)).toBe(true);
  });

  it("keeps tokens above every earlier one after the counter is lost (FLUSHALL, restart)", async () => {
    const { leases } = manager();
    const before = await leases.acquire("k", 10_000);
    await redis.connection.client.del(leases.fenceKey("k"), leases.leaseKey("k"));
    // The floor is Redis's clock in ms: let it tick once.
    await new Promise((resolve) => setTimeout(resolve, 2));
    const after = await leases.acquire("k", 10_000);
    expect(after!.token).toBeGreaterThan(before!.token);
  });

  it("a key's fence expires a while after its lease, so a URL flood leaves no fence per URL in Redis forever", async () => {
    const { leases } = manager();
    for (let i = 0; i < 50; i++) await leases.release((await leases.acquire(`flood-${i}`, 10_000))!);
    for (let i = 0; i < 50; i++) {
      const ttl = await redis.connection.client.pttl(leases.fenceKey(`flood-${i}`));
      expect(ttl).toBeGreaterThan(10_000);
      expect(ttl).toBeLessThanOrEqual(10_000 + 10 * 60_000);
    }
  });

  it("a holder's refresh-ahead mark is read by the others while the lease lives and goes with it; a stale token marks nothing", async () => {
    const { leases } = manager();
    const lease = await leases.acquire("k", 10_000);
    expect(await leases.renewing("k")).toBeUndefined();
    await leases.markRenewing(lease!, T0 + 2_000);
    expect(await leases.renewing("k")).toBe(T0 + 2_000);
    expect(await redis.connection.client.pttl(leases.renewKey("k"))).toBeGreaterThan(9_000);
    await leases.release(lease!);
    expect(await leases.renewing("k")).toBeUndefined();
    const next = await leases.acquire("k", 10_000);
    await leases.markRenewing(lease!, T0 + 4_000);
    expect(await leases.renewing("k")).toBeUndefined();
    await leases.release(next!);
  });

  it("when reads sent after an acquire must follow it, the acquire is one command even with Redis's script cache empty (EVAL, never an EVALSHA refused and sent again behind them), announced as it is sent", async () => {
    const sent: string[] = [];
    const leases = new RedisLeaseManager({
      connection: redis.connection,
      prefix: redis.prefix(),
      onAcquire: (key) => sent.push(key),
    });
    const calls = async (command: string) =>
      Number(
        new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(await redis.connection.client.info("commandstats"))?.[1] ??
          0,
      );
    await redis.connection.client.script("FLUSH");
    const [evalsBefore, evalshasBefore] = [await calls("eval"), await calls("evalsha")];
    expect(await leases.acquire("k", 10_000)).toBeDefined();
    expect([(await calls("eval")) - evalsBefore, (await calls("evalsha")) - evalshasBefore]).toEqual([1, 0]);
    expect(sent).toEqual(["k"]);
    // Every script back in the cache, as a reconnect loads them, for the tests that follow.
    await loadScripts(redis.connection.client as Redis, redis.connection.client);
  });

  it("refuses extend and release with a stale token", async () => {
    const { leases } = manager();
    const lease = await leases.acquire("k", 10_000);
    const forged = { ...lease!, token: lease!.token - 1 };
    expect(await leases.extend(forged, 10_000)).toBe(false);
    expect(await leases.release(forged)).toBe(false);
    expect(await redis.connection.client.get(leases.leaseKey("k"))).toBe(String(lease!.token));
  });

  it("checks ttlMs", async () => {
    const { leases } = manager();
    const error = await leases.acquire("k", 0).catch((e: unknown) => e);
    expect(isHerdlessError(error, "CONFIG_INVALID")).toBe(true);
  });
});

describe("RedisLeaseManager when Redis loses its data (FLUSHALL) while a fill runs", () => {
  const wipe = (leases: RedisLeaseManager, key: string) =>
    redis.connection.client.del(leases.leaseKey(key), leases.fenceKey(key), leases.renewKey(key));

  it("an extend finds the lease gone and takes it again: the body it streams is not cut; a lease another holds is still refused", async () => {
    const { leases } = manager();
    const lease = await leases.acquire("k", 10_000);
    await wipe(leases, "k");
    expect(await leases.extend(lease!, 10_000)).toBe(true);
    expect(await redis.connection.client.get(leases.leaseKey("k"))).toBe(String(lease!.token));
    expect(await redis.connection.client.pttl(leases.leaseKey("k"))).toBeGreaterThan(9_000);
    await redis.connection.client.set(leases.leaseKey("k"), String(lease!.token + 1));
    expect(await leases.extend(lease!, 10_000)).toBe(false);
  });

  it("holds: one read, true while the lease is the flight's, false once another took it", async () => {
    const { leases } = manager();
    const lease = await leases.acquire("k", 10_000);
    expect(await leases.holds(lease!)).toBe(true);
    await wipe(leases, "k");
    // Another process's fill took the key since: its token is newer (drawn from Redis's clock
    // once the counter was lost; set here, as two acquires within one millisecond draw the same).
    await redis.connection.client.set(leases.leaseKey("k"), String(lease!.token + 1));
    expect(await leases.holds(lease!)).toBe(false);
  });

  it("reassert, while no permit can be granted after the loss: takes the lease back from a holder that took it since (a newer token), with its refresh-ahead mark and the fence; never from an older holder; after that wait, only where it is gone", async () => {
    const { clock, leases } = manager();
    const prefix = leases.leaseKey("").replace(/lease:{}$/, "");
    const other = new RedisLeaseManager({ connection: redis.connection, prefix, clock });
    const mine = await leases.acquire("k", 10_000);
    await leases.markRenewing(mine!, T0 + 5_000);
    await wipe(leases, "k");
    await new Promise((resolve) => setTimeout(resolve, 2)); // tokens after the loss are Redis's clock in ms
    const theirs = await other.acquire("k", 10_000);
    expect(theirs!.token).toBeGreaterThan(mine!.token);

    await leases.reassert(clock.now() + 2_000);
    expect(await redis.connection.client.get(leases.leaseKey("k"))).toBe(String(mine!.token));
    expect(await leases.renewing("k")).toBe(T0 + 5_000);
    expect(Number(await redis.connection.client.get(leases.fenceKey("k")))).toBeGreaterThanOrEqual(mine!.token);
    // The newer holder, told of the loss too, writes its own back: the older keeps the lease.
    await other.reassert(clock.now() + 2_000);
    expect(await redis.connection.client.get(leases.leaseKey("k"))).toBe(String(mine!.token));
    expect(await other.extend(theirs!, 10_000)).toBe(false);

    // Past the wait (or within its last instants): a holder since may be calling the origin; only a lease gone is taken back.
    await wipe(leases, "k");
    const late = await other.acquire("k", 10_000);
    await leases.reassert(clock.now() + 100);
    expect(await redis.connection.client.get(leases.leaseKey("k"))).toBe(String(late!.token));
    await other.release(late!);
    await leases.reassert(0);
    expect(await redis.connection.client.get(leases.leaseKey("k"))).toBe(String(mine!.token));
    // A released lease is not written back.
    await leases.release(mine!);
    await leases.reassert(clock.now() + 2_000);
    expect(await redis.connection.client.exists(leases.leaseKey("k"))).toBe(0);
  });

  it("an extend that finds its lease taken asks the guard to look for a loss, and is granted once the loss it saw was dealt with", async () => {
    const clock = new ManualClock(T0);
    const prefix = redis.prefix();
    let looks = 0;
    const leases: RedisLeaseManager = new RedisLeaseManager({
      connection: redis.connection,
      prefix,
      clock,
      lookForLoss: async () => {
        looks++;
        await leases.reassert(clock.now() + 2_000);
      },
    });
    const other = new RedisLeaseManager({ connection: redis.connection, prefix, clock });
    const mine = await leases.acquire("k", 10_000);
    await redis.connection.client.del(leases.leaseKey("k"));
    await new Promise((resolve) => setTimeout(resolve, 2));
    await other.acquire("k", 10_000);
    expect(await leases.extend(mine!, 10_000)).toBe(true);
    expect(looks).toBe(1);
    expect(await redis.connection.client.get(leases.leaseKey("k"))).toBe(String(mine!.token));
    await leases.release(mine!);
  });
});

describe("RedisLeaseManager: a lease its fill released is never written back (keys left locked, their waiters unanswered for coordinator.lockLeaseMs)", () => {
  /*
   * After a restart or a failover every script is in Redis's cache before the first command
   * that runs one (lua-script.test.ts): the write-back and the extend run where they were
   * sent, before the release. Redis refuses them for their script (NOSCRIPT) only when its
   * cache is emptied under a live connection (SCRIPT FLUSH): then they are not sent again.
   */

  it("a write-back after FLUSHALL whose script Redis did not know (NOSCRIPT) is not sent again behind the release of a fill that ended meanwhile", async () => {
    const { clock, leases } = manager();
    const mine = await leases.acquire("k", 10_000);
    await redis.connection.client.script("FLUSH");
    await redis.connection.client.del(leases.leaseKey("k"));
    // The guard saw the loss as the fill ended: the write-back goes first, the release right
    // behind it. Both are refused; the release is tried again (every 100 ms) and frees nothing.
    const writeBack = leases.reassert(clock.now() + 2_000);
    const released = leases.release(mine!).catch(() => false);
    await Promise.all([writeBack, released]);
    expect(await redis.connection.client.exists(leases.leaseKey("k"))).toBe(0);
    expect(await leases.acquire("k", 10_000)).toBeDefined();
  });

  it("an extend refused for its script (NOSCRIPT) is not sent again behind the release of its fill", async () => {
    const { leases } = manager();
    const mine = await leases.acquire("k", 10_000);
    await redis.connection.client.script("FLUSH");
    const extended = leases.extend(mine!, 10_000).catch((error: unknown) => error);
    const released = leases.release(mine!).catch(() => false);
    // Refused, the extend fails like any failed command (a streaming fill goes on: StreamingFlights.keepLease).
    expect(isHerdlessError(await extended, "COORDINATOR_UNAVAILABLE")).toBe(true);
    await released;
    // The release, refused too, is tried again until Redis runs it.
    await expect
      .poll(() => redis.connection.client.exists(leases.leaseKey("k")), { timeout: 1_000, interval: 10 })
      .toBe(0);
    expect(await leases.acquire("k", 10_000)).toBeDefined();
  });

  it("an extend that looked for a loss does not try again once its fill released the lease meanwhile", async () => {
    const clock = new ManualClock(T0);
    const prefix = redis.prefix();
    const other = new RedisLeaseManager({ connection: redis.connection, prefix, clock });
    const leases: RedisLeaseManager = new RedisLeaseManager({
      connection: redis.connection,
      prefix,
      clock,
      // While the guard looks, the fill ends, and so does the other process's fill of the key.
      lookForLoss: async () => {
        await leases.release(mine!);
        await other.release(theirs!);
      },
    });
    const mine = await leases.acquire("k", 10_000);
    await redis.connection.client.del(leases.leaseKey("k"));
    await new Promise((resolve) => setTimeout(resolve, 2));
    const theirs = await other.acquire("k", 10_000);
    expect(await leases.extend(mine!, 10_000)).toBe(false);
    expect(await redis.connection.client.exists(leases.leaseKey("k"))).toBe(0);
  });
});

/**
 * `other`'s lease on "k", tried every 20 ms until it is given or `withinMs` has passed since
 * Redis resumed; undefined if it never was.
 */
async function takenWithin(other: RedisLeaseManager, withinMs: number) {
  const resumedAt = performance.now();
  let taken: Awaited<ReturnType<typeof other.acquire>>;
  while (!(taken = await other.acquire("k", 10_000).catch(() => undefined)) && performance.now() - resumedAt < withinMs)
    await new Promise((resolve) => setTimeout(resolve, 20));
  return taken;
}

describe("RedisLeaseManager when Redis goes away", () => {
  it("fails fast while Redis is down, flips healthy, and recovers after restart with higher tokens", async () => {
    const outage = await startRedisServer();
    const conn = new RedisConnection({ url: outage.url });
    const changes: boolean[] = [];
    conn.onHealthChange((healthy) => changes.push(healthy));
    await conn.ready();
    const leases = new RedisLeaseManager({ connection: conn, prefix: "outage:" });
    const before = await leases.acquire("k", 10_000);
    expect(conn.healthy).toBe(true);

    await outage.kill();
    await expect.poll(() => conn.healthy, { timeout: 1_000, interval: 10 }).toBe(false);
    for (const call of [
      () => leases.acquire("k2", 10_000),
      () => leases.release(before!),
      () => leases.extend(before!, 10_000),
    ]) {
      const started = performance.now();
      const error = await call().catch((e: unknown) => e);
      expect(isHerdlessError(error, "COORDINATOR_UNAVAILABLE")).toBe(true);
      expect(performance.now() - started).toBeLessThan(1_500);
    }

    await outage.restart();
    await conn.ready(3_000);
    expect(conn.healthy).toBe(true);
    expect(changes).toEqual([true, false, true]);
    // The restarted Redis lost the counter; tokens still rise above every earlier one.
    const after = await leases.acquire("k", 10_000);
    expect(after!.token).toBeGreaterThan(before!.token);
    expect(await leases.release(after!)).toBe(true);

    await conn.close();
    await outage.stop();
  });

  it("rejects an in-flight call when the server dies under it", async () => {
    const outage = await startRedisServer();
    const conn = new RedisConnection({ url: outage.url });
    await conn.ready();
    const leases = new RedisLeaseManager({ connection: conn, prefix: "inflight:" });
    // Frozen first, so the command is surely on the wire, unanswered, when SIGKILL lands.
    outage.pause();
    const started = performance.now();
    const pending = leases.acquire("k", 10_000).catch((e: unknown) => e);
    await outage.kill();
    expect(isHerdlessError(await pending, "COORDINATOR_UNAVAILABLE")).toBe(true);
    expect(performance.now() - started).toBeLessThan(500);
    await conn.close();
  });

  it("gives up on a frozen server after the command timeout, then fails at once until it answers again", async () => {
    const outage = await startRedisServer();
    const conn = new RedisConnection({ url: outage.url, commandTimeoutMs: 500 });
    await conn.ready();
    const leases = new RedisLeaseManager({ connection: conn, prefix: "frozen:" });
    outage.pause();
    let started = performance.now();
    expect(isHerdlessError(await leases.acquire("k", 10_000).catch((e: unknown) => e), "COORDINATOR_UNAVAILABLE")).toBe(
      true,
    );
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(conn.healthy).toBe(false);
    started = performance.now();
    expect(isHerdlessError(await leases.acquire("k", 10_000).catch((e: unknown) => e), "COORDINATOR_UNAVAILABLE")).toBe(
      true,
    );
    expect(performance.now() - started).toBeLessThan(200); // no round trip: rejected before sending
    outage.resume();
    await conn.ready(3_000);
    // The acquire of "k" that timed out was still in the frozen server's socket and ran when it
    // resumed; once Redis answers, what it took is dropped (the next test).
    expect(await leases.acquire("k2", 10_000)).toBeDefined();
    await conn.close();
    await outage.stop();
  });

  it("an acquire that timed out on a frozen server and ran when it resumed is undone: the others get the key at once, not after the lease", async () => {
    const outage = await startRedisServer();
    const conn = new RedisConnection({ url: outage.url, commandTimeoutMs: 200, maxReconnectDelayMs: 50 });
    const otherConn = new RedisConnection({ url: outage.url });
    await Promise.all([conn.ready(), otherConn.ready()]);
    const freed: string[] = [];
    const prefix = "ghost-acquire:";
    const holder = new RedisLeaseManager({ connection: conn, prefix, onFreedLate: (key) => freed.push(key) });
    const other = new RedisLeaseManager({ connection: otherConn, prefix });
    outage.pause();
    expect(isHerdlessError(await holder.acquire("k", 10_000).catch((e: unknown) => e), "COORDINATOR_UNAVAILABLE")).toBe(
      true,
    );
    outage.resume();
    const taken = await takenWithin(other, 3_000);
    // Before: the acquire that ran on resuming held "k" for its whole lease (10 s), for nobody.
    expect(taken).toBeDefined();
    // Undone when Redis ran the timed-out acquire on resuming. A CI run found nothing to undo and
    // "k" free: Redis had not run it (it may see the dropped socket before the bytes on it).
    expect(["k", ""]).toContain(freed.join(","));
    // Dropped once: the next holder keeps its lease.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await otherConn.client.get(other.leaseKey("k"))).toBe(String(taken!.token));
    await conn.close();
    await otherConn.close();
    await outage.stop();
  });

  it("a release that failed while Redis stalled is sent again once it answers: the others get the key then, not after the whole lease", async () => {
    const outage = await startRedisServer();
    const conn = new RedisConnection({ url: outage.url, commandTimeoutMs: 200, maxReconnectDelayMs: 50 });
    const otherConn = new RedisConnection({ url: outage.url });
    await Promise.all([conn.ready(), otherConn.ready()]);
    const freed: string[] = [];
    const prefix = "stalled-release:";
    const holder = new RedisLeaseManager({ connection: conn, prefix, onFreedLate: (key) => freed.push(key) });
    const other = new RedisLeaseManager({ connection: otherConn, prefix });
    const lease = await holder.acquire("k", 10_000);
    outage.pause();
    // The holder's next command times out and drops the socket; its release then fails at once.
    await holder.held("k").catch(() => undefined);
    expect(isHerdlessError(await holder.release(lease!).catch((e: unknown) => e), "COORDINATOR_UNAVAILABLE")).toBe(
      true,
    );
    outage.resume();
    const taken = await takenWithin(other, 3_000);
    expect(taken).toBeDefined();
    // Those who wait on the key are told (the fleet announces it): the news of the fill's end
    // went with the failed release, and they waited out their whole wait (coordinator.lockLeaseMs).
    expect(freed).toEqual(["k"]);
    // Only its own token: the retry does not free the next holder's lease.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await otherConn.client.get(other.leaseKey("k"))).toBe(String(taken!.token));
    await conn.close();
    await otherConn.close();
    await outage.stop();
  });
});
