import { describe, expect, it } from "vitest";
import { systemClock } from "../../core/clock.ts";
import { parseConfig } from "../../core/config.ts";
import { isHerdlessError } from "../../core/errors.ts";
import { LocalGuard } from "../../core/guard/local-guard.ts";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import { RedisConnection } from "./connection.ts";
import { RedisGuard } from "./guard.ts";
import { FleetMembers } from "./members.ts";

const redis = redisTestConnection({ maxReconnectDelayMs: 100 });

const configFor = (maxConcurrency: number, queueTimeoutMs = 200) =>
  parseConfig({ origin: { url: "http://127.0.0.1:8080", maxConcurrency, queueTimeoutMs, timeoutMs: 5_000 } });
const code = (error: unknown) => (isHerdlessError(error) ? error.code : String(error));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 5 ms; fails the test after `timeoutMs`. */
async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

/**
 * Two processes' guards with the same settings: `guard` on a connection of its own that gives
 * up on a command after 200 ms (a stalled Redis drops it), `other` on the shared connection.
 */
async function stalledAndOther(
  config: ReturnType<typeof configFor>,
  settings: { prefix: string; permitTtlMs?: number },
) {
  const conn = await redis.connect({ commandTimeoutMs: 200, maxReconnectDelayMs: 50 });
  const options = { config, clock: systemClock, rejoinAfterMs: 50, ...settings };
  const guard = new RedisGuard({
    ...options,
    connection: conn,
    fallback: new LocalGuard({ config, clock: systemClock }),
  });
  const other = new RedisGuard({
    ...options,
    connection: redis.connection,
    fallback: new LocalGuard({ config, clock: systemClock }),
  });
  return { guard, other };
}

describe("RedisGuard: Redis outage", () => {
  it("degrades to the local fallback while Redis is down and returns to Redis when it is back", async () => {
    const config = configFor(2);
    const fallback = new LocalGuard({ config, clock: systemClock });
    const changes: boolean[] = [];
    const guard = new RedisGuard({
      connection: redis.connection,
      config,
      clock: systemClock,
      fallback,
      prefix: "outage:",
      rejoinAfterMs: 50,
      onDegradedChange: (d) => changes.push(d),
    });

    const shared = await guard.acquire("foreground");
    expect(guard.degraded).toBe(false);
    expect(await redis.connection.client.zcard(guard.permitsKey)).toBe(1);
    await shared.release("success");

    await redis.server.kill();
    // No other process held a permit when it last asked Redis: none of its slots is held back.
    const local = await guard.acquire("foreground");
    expect(guard.degraded).toBe(true);
    expect(await guard.snapshot()).toMatchObject({ inFlight: 1 });
    expect((await fallback.snapshot()).inFlight).toBe(1);
    await local.release("success");
    expect((await fallback.snapshot()).inFlight).toBe(0);

    await redis.server.restart();
    await redis.connection.ready();
    await until("the rejoin grace is over", () => !guard.degraded);
    const back = await guard.acquire("foreground");
    expect(guard.degraded).toBe(false);
    expect(await redis.connection.client.zcard(guard.permitsKey)).toBe(1);
    expect((await fallback.snapshot()).inFlight).toBe(0);
    await back.release("success");
    expect(changes).toEqual([true, false]);
    guard.close();
  });

  it("holds back as many free slots of its share as the others held when it last asked, until their leases must have ended", async () => {
    const config = configFor(4, 5_000);
    const prefix = `held:${process.pid}:`;
    const permitTtlMs = 400;
    const other = new RedisConnection({ url: redis.server.url, maxReconnectDelayMs: 100 });
    await Promise.all([redis.connection.ready(), other.ready()]);
    const a = new RedisGuard({
      connection: other,
      config,
      clock: systemClock,
      prefix,
      permitTtlMs,
      longestCallMs: permitTtlMs,
      fallback: new LocalGuard({ config, clock: systemClock }),
    });
    const fallback = new LocalGuard({ config, clock: systemClock });
    const b = new RedisGuard({
      connection: redis.connection,
      config,
      clock: systemClock,
      prefix,
      permitTtlMs,
      longestCallMs: permitTtlMs,
      fallback,
    });
    await Promise.all([a.acquire("foreground"), a.acquire("foreground")]);
    const first = await b.acquire("foreground"); // Redis reports the 2 permits of a

    await redis.server.kill();
    try {
      const switchedAt = performance.now();
      const second = await b.acquire("foreground");
      expect(b.degraded).toBe(true);
      const third = b.acquire("foreground");
      // Its 2 calls and the 2 slots a may be using: the share of 4 is full until a's permits lapse.
      expect(await fallback.snapshot()).toMatchObject({ inFlight: 4, queued: 1 });
      await third;
      expect(performance.now() - switchedAt).toBeGreaterThanOrEqual(permitTtlMs - 50);
      await Promise.all([first, second, await third].map((p) => p.release("success")));
      for (const g of [a, b]) g.close();
      await other.close();
    } finally {
      await redis.server.restart();
      await redis.connection.ready();
    }
  });

  it("three processes keep the fleet under the cap through the outage (one of them over its share at the switch) and are back on the shared cap within a second of Redis returning", async () => {
    const cap = 4;
    const config = configFor(cap);
    const prefix = `shares:${process.pid}:`;
    // Production defaults for the reconnect backoff and the rejoin grace; a short permit
    // lease so the held-back slots lapse within the outage.
    const permitTtlMs = 1_500;
    const processes = await Promise.all(
      [0, 1, 2].map(async () => {
        const conn = new RedisConnection({ url: redis.server.url });
        await conn.ready();
        const members = new FleetMembers({ connection: conn, prefix });
        const fallback = new LocalGuard({ config, clock: systemClock, maxConcurrency: () => members.share(cap, 1) });
        const guard = new RedisGuard({
          connection: conn,
          config,
          clock: systemClock,
          fallback,
          prefix,
          permitTtlMs,
          longestCallMs: permitTtlMs,
        });
        return { conn, members, guard, grantedDegraded: 0 };
      }),
    );
    for (let round = 0; round < 2; round++) for (const p of processes) await p.members.beat();
    expect(processes.map((p) => p.members.share(cap, 1)).sort()).toEqual([1, 1, 2]);
    // A process that never saw the fleet assumes fleet.minProcesses and ranks last.
    const stranger = new FleetMembers({ connection: redis.connection, prefix: "stranger:" });
    expect(stranger.share(4, 3)).toBe(1);
    expect(stranger.share(2, 3)).toBe(0);

    let outstanding = 0;
    let maxOutstanding = 0;
    let granted = 0;
    let stop = false;
    const hold = () => {
      granted++;
      maxOutstanding = Math.max(maxOutstanding, ++outstanding);
    };
    // A process of share 1 holds 3 slow calls through the switch: 2 of them are slots of the
    // others' shares, which they must not use until those calls must have ended.
    const over = processes.find((p) => p.members.share(cap, 1) === 1)!;
    const slow = await Promise.all([0, 1, 2].map(() => over.guard.acquire("foreground")));
    slow.forEach(hold);
    const worker = async (p: (typeof processes)[number]) => {
      while (!stop) {
        try {
          const permit = await p.guard.acquire("foreground");
          hold();
          if (p.guard.degraded) p.grantedDegraded++;
          await sleep(5 + Math.random() * 30);
          outstanding--;
          await permit.release("success");
        } catch (error) {
          expect(code(error)).toBe("QUEUE_TIMEOUT");
        }
      }
    };
    const workers = processes.flatMap((p) => Array.from({ length: 6 }, () => worker(p)));
    await until("the workers share the free slot", () => granted > 3 + 10);

    await redis.server.kill(); // the permits granted by Redis are still held
    await until("every process is degraded", () => processes.every((p) => p.guard.degraded));
    await sleep(300); // the slow calls run on past the switch
    for (const permit of slow) {
      outstanding--;
      await permit.release("success");
    }
    for (const p of processes) p.grantedDegraded = 0;
    // Once the held-back slots lapse, every process admits within its share, Redis still down.
    await until("every process admits on its share", () => processes.every((p) => p.grantedDegraded > 0));
    expect(maxOutstanding).toBeLessThanOrEqual(cap);

    await redis.server.restart(); // empty: every process writes its held permits back before admitting through Redis
    const returnedAt = performance.now();
    await until("the fleet is back on the shared cap", () => processes.every((p) => !p.guard.degraded), 5_000);
    const backAfterMs = performance.now() - returnedAt;
    const grantedBack = granted;
    await until("calls are admitted through Redis", () => granted > grantedBack + 10);
    stop = true;
    await Promise.all(workers);
    expect(maxOutstanding).toBeLessThanOrEqual(cap);
    expect(maxOutstanding).toBeGreaterThan(1);
    expect(backAfterMs).toBeLessThan(1_000);
    // A finished call's release is sent without waiting for Redis's answer: the count reaches 0 once they land.
    const permits = () => processes[0]!.conn.client.zcard(processes[0]!.guard.permitsKey);
    await until("every permit is released in Redis", async () => (await permits()) === 0, 2_000);
    expect(await permits()).toBe(0);
    for (const p of processes) {
      p.guard.close();
      await p.members.stop();
      await p.conn.close();
    }
  });

  it("callers queued on the local share while Redis was away are served once the fleet's cap is back, not left to their queue timeout", async () => {
    const config = configFor(4, 5_000);
    const fallback = new LocalGuard({ config, clock: systemClock, maxConcurrency: () => 1 });
    const guard = new RedisGuard({
      connection: redis.connection,
      config,
      clock: systemClock,
      fallback,
      prefix: `stranded:${process.pid}:`,
      rejoinAfterMs: 50,
    });
    await redis.server.kill();
    try {
      // A long call holds the share's one slot; two more callers queue behind it.
      const long = await guard.acquire("foreground");
      const queued = [guard.acquire("foreground"), guard.acquire("background")];
      await sleep(20);
      expect(await fallback.snapshot()).toMatchObject({ inFlight: 1, queued: 2 });
      await redis.server.restart();
      await redis.connection.ready();
      await until("the fleet's cap is back", () => !guard.degraded);
      const served = await Promise.race([Promise.all(queued), sleep(1_000).then(() => "still queued")]);
      expect(served).not.toBe("still queued");
      // Counted where every process counts them: Redis (the long call was written back on the rejoin).
      expect(await redis.connection.client.zcard(guard.permitsKey)).toBe(3);
      expect(await fallback.snapshot()).toMatchObject({ queued: 0 });
      for (const permit of [long, ...(await Promise.all(queued))]) await permit.release("success");
    } finally {
      guard.close();
      if (!redis.connection.healthy) {
        await redis.server.restart();
        await redis.connection.ready();
      }
    }
  });

  it("a permit released while Redis stalled does not hold its slot of the fleet's cap after Redis answers again", async () => {
    const config = configFor(1, 5_000);
    const { guard, other } = await stalledAndOther(config, { prefix: `unheard:${process.pid}:`, permitTtlMs: 20_000 });
    const permit = await guard.acquire("foreground");
    redis.server.pause();
    try {
      await guard.snapshot(); // times out: the guard drops the socket and keeps to its share
      expect(guard.degraded).toBe(true);
      await permit.release("success"); // Redis cannot hear of it
    } finally {
      redis.server.resume();
    }
    await until("the guard is back on the fleet's cap", () => !guard.degraded);
    // The fleet's one slot is free: another process gets it at once, not after the permit's 20 s lease.
    const next = await other.acquire("foreground", undefined, true);
    await next.release("success");
    guard.close();
    other.close();
  });

  it("a permit Redis granted after the guard gave up on its request (Redis stalled) does not hold a slot of the fleet's cap", async () => {
    const config = configFor(1, 5_000);
    const { guard, other } = await stalledAndOther(config, {
      prefix: `ghost-permit:${process.pid}:`,
      permitTtlMs: 20_000,
    });
    redis.server.pause();
    try {
      // The acquire times out in Redis's socket: the call runs on the local share, and Redis
      // grants that permit when it resumes, to nobody.
      const local = await guard.acquire("foreground");
      expect(guard.degraded).toBe(true);
      await local.release("success");
    } finally {
      redis.server.resume();
    }
    await until("the guard is back on the fleet's cap", () => !guard.degraded);
    // Before: the fleet's one slot was held by that permit for its 20 s lease: ORIGIN_BUSY here.
    const next = await other.acquire("foreground", undefined, true);
    await next.release("success");
    guard.close();
    other.close();
  });

  it("a probe Redis granted after the guard gave up on its request does not hold the fleet's breaker half-open: the next call probes", async () => {
    const config = parseConfig({
      origin: { url: "http://127.0.0.1:8080", maxConcurrency: 4, timeoutMs: 5_000 },
      breaker: { failureThreshold: 1, minFailingKeys: 1, probeIntervalMs: 100 },
    });
    const { guard, other } = await stalledAndOther(config, { prefix: `ghost-probe:${process.pid}:` });
    await (await other.acquire("foreground")).release("failure", "/down");
    expect((await other.snapshot()).breaker).toBe("open");
    await sleep(150); // the next call is the probe
    redis.server.pause();
    try {
      // The try times out in Redis's socket (the call goes on with the process's share); Redis
      // makes it the fleet's probe when it resumes.
      await (await guard.acquire("foreground")).release("success");
      expect(guard.degraded).toBe(true);
    } finally {
      redis.server.resume();
    }
    await until("the guard is back on the fleet's cap", () => !guard.degraded);
    // Before: BREAKER_OPEN until that probe would have lapsed (origin.timeoutMs, 5 s).
    const probe = await other.acquire("foreground");
    await probe.release("success");
    expect((await other.snapshot()).breaker).toBe("closed");
    guard.close();
    other.close();
  });

  describe("a caller's time in queues is origin.queueTimeoutMs in all, across Redis dropping and returning", () => {
    const queueTimeoutMs = 600;
    const margin = 150;

    /** One slot held by a slow call; a second caller queues behind it, and `outage` runs `afterMs` into its wait. */
    async function queueThrough(
      name: string,
      afterMs: number,
      outage: (guard: RedisGuard) => Promise<void>,
    ): Promise<{ answer: string; waited: number }> {
      const config = configFor(1, queueTimeoutMs);
      const fallback = new LocalGuard({ config, clock: systemClock });
      const guard = new RedisGuard({
        ...{ connection: redis.connection, config, clock: systemClock, fallback },
        ...{ prefix: `${name}:${process.pid}:`, rejoinAfterMs: 50 },
      });
      const slow = await guard.acquire("foreground");
      try {
        const queuedAt = performance.now();
        const answer = guard.acquire("foreground").then(async (permit) => {
          await permit.release("success");
          return "permit";
        }, code);
        await sleep(afterMs);
        expect(guard.degraded).toBe(false); // queued in the fleet's queue until now
        await outage(guard);
        return { answer: await answer, waited: performance.now() - queuedAt };
      } finally {
        await slow.release("success");
        guard.close();
        if (!redis.connection.healthy) {
          await redis.server.restart();
          await redis.connection.ready();
        }
      }
    }

    it("Redis drops: the caller moved to the fallback's queue gets QUEUE_TIMEOUT at its first deadline, not a new one", async () => {
      const { answer, waited } = await queueThrough("deadline-drop", queueTimeoutMs / 2, () => redis.server.kill());
      // Before: a fresh queueTimeoutMs in the fallback's queue from the drop: about 900 ms here.
      expect(answer).toBe("QUEUE_TIMEOUT");
      expect(waited).toBeLessThan(queueTimeoutMs + margin);
    });

    it("Redis drops and returns: the caller back in the fleet's queue still has only what was left of its time", async () => {
      const { answer, waited } = await queueThrough("deadline-rejoin", queueTimeoutMs / 4, async (guard) => {
        await redis.server.kill();
        await sleep(queueTimeoutMs / 8);
        await redis.server.restart();
        await redis.connection.ready();
        // Back on the fleet's cap well before the deadline: the caller rejoins the fleet's queue.
        await until("the guard is back on the fleet's cap", () => !guard.degraded, queueTimeoutMs / 2);
      });
      // Before: a fresh queueTimeoutMs in the fallback's queue, then another in the fleet's from
      // the rejoin (about 150 + 160 + 600 ms here).
      expect(answer).toBe("QUEUE_TIMEOUT");
      expect(waited).toBeLessThan(queueTimeoutMs + margin);
    });
  });
});
