import { beforeAll, describe, expect, it } from "vitest";
import { admit, closedBreaker, parseBreakerRecord, record, type BreakerSettings } from "../../core/guard/breaker.ts";
import { ManualClock, systemClock, type Clock } from "../../core/clock.ts";
import { parseConfig } from "../../core/config.ts";
import { isHerdlessError } from "../../core/errors.ts";
import { LocalGuard, type Timers } from "../../core/guard/local-guard.ts";
import type { OriginPermit, Priority } from "../../core/guard/origin-guard.ts";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import type { RedisConnection } from "./connection.ts";
import { RedisGuard } from "./guard.ts";

const T0 = 1_700_000_000_000;
const redis = redisTestConnection();
/** Three "processes": each guard has its own connection. */
let connections: RedisConnection[] = [];

beforeAll(async () => {
  connections = [redis.connection, await redis.connect(), await redis.connect()];
});

interface FleetOptions {
  maxConcurrency?: number;
  maxQueue?: number;
  queueTimeoutMs?: number;
  failureThreshold?: number;
  probeIntervalMs?: number;
  timeoutMs?: number;
  permitTtlMs?: number;
  clock?: Clock;
}

function configFor(o: FleetOptions) {
  return parseConfig({
    origin: {
      url: "http://127.0.0.1:8080",
      maxConcurrency: o.maxConcurrency ?? 4,
      maxQueue: o.maxQueue ?? 1_000,
      queueTimeoutMs: o.queueTimeoutMs ?? 10_000,
      timeoutMs: o.timeoutMs ?? 5_000,
    },
    breaker: {
      failureThreshold: o.failureThreshold ?? 3,
      probeIntervalMs: o.probeIntervalMs ?? 1_000,
      minFailingKeys: Math.min(3, o.failureThreshold ?? 3),
    },
  });
}

/** Three guards sharing one fresh namespace. */
function fleet(o: FleetOptions = {}) {
  const clock = o.clock ?? new ManualClock(T0);
  const config = configFor(o);
  const prefix = redis.prefix();
  const guards = connections.map(
    (connection) =>
      new RedisGuard({
        connection,
        config,
        clock,
        prefix,
        permitTtlMs: o.permitTtlMs,
        fallback: new LocalGuard({ config, clock }),
      }),
  );
  return { clock, config, guards, redis: connections[0]!.client };
}

const code = (error: unknown) => (isHerdlessError(error) ? error.code : String(error));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every guard tries `perGuard` acquires at once; returns the permits granted. */
async function hammer(
  guards: RedisGuard[],
  perGuard: number,
  priority: Priority = "foreground",
): Promise<OriginPermit[]> {
  const attempts = await Promise.allSettled(
    guards.flatMap((g) => Array.from({ length: perGuard }, () => g.acquire(priority))),
  );
  for (const attempt of attempts) if (attempt.status === "rejected") expect(code(attempt.reason)).toBe("BREAKER_OPEN");
  return attempts.flatMap((a) => (a.status === "fulfilled" ? [a.value] : []));
}

describe("RedisGuard: deployment-wide cap", () => {
  it("never has more than maxConcurrency permits outstanding across three processes and 300 acquirers", async () => {
    const { guards, redis } = fleet({ maxConcurrency: 4, clock: systemClock });
    let outstanding = 0;
    let maxOutstanding = 0;
    let maxHeldInRedis = 0;
    const outcomes: string[] = [];
    const run = async (i: number) => {
      const guard = guards[i % 3]!;
      try {
        const permit = await guard.acquire(i % 5 === 0 ? "background" : "foreground");
        outstanding++;
        maxOutstanding = Math.max(maxOutstanding, outstanding);
        if (i % 10 === 0) maxHeldInRedis = Math.max(maxHeldInRedis, await redis.zcard(guard.permitsKey));
        await sleep(Math.random() * 4);
        outstanding--;
        await permit.release("success");
        outcomes.push("granted");
      } catch (error) {
        outcomes.push(code(error));
      }
    };
    await Promise.all(Array.from({ length: 300 }, (_, i) => run(i)));
    expect(outcomes).toHaveLength(300);
    expect(outcomes.every((o) => o === "granted" || o === "QUEUE_TIMEOUT")).toBe(true);
    expect(outcomes.filter((o) => o === "granted").length).toBeGreaterThan(0);
    expect(maxOutstanding).toBeLessThanOrEqual(4);
    expect(maxOutstanding).toBeGreaterThan(1);
    expect(maxHeldInRedis).toBeLessThanOrEqual(4);
    expect(await redis.zcard(guards[0]!.permitsKey)).toBe(0);
    expect(guards.some((g) => g.degraded)).toBe(false);
  });

  it("an ifFree call takes a slot free anywhere in the fleet, and is refused ORIGIN_BUSY at once when the fleet's are all held", async () => {
    const { guards } = fleet({ maxConcurrency: 2 });
    const held = [await guards[0]!.acquire("foreground"), await guards[1]!.acquire("foreground", undefined, true)];
    await expect(guards[2]!.acquire("foreground", undefined, true)).rejects.toSatisfy((e) => code(e) === "ORIGIN_BUSY");
    await held[0]!.release("success");
    // A plain success is sent behind the release: the slot is free once Redis has it.
    while ((await guards[2]!.snapshot()).inFlight > 1) await sleep(5);
    const third = await guards[2]!.acquire("foreground", undefined, true);
    await Promise.all([held[1]!.release("success"), third.release("success")]);
  });

  it("keeps one slot for foreground: background waits while maxConcurrency - 1 are held", async () => {
    const { guards } = fleet({ maxConcurrency: 4, queueTimeoutMs: 150, clock: systemClock });
    const [a, b, c] = guards as [RedisGuard, RedisGuard, RedisGuard];
    const held = await Promise.all([a.acquire("foreground"), a.acquire("background"), b.acquire("background")]);
    await expect(c.acquire("background")).rejects.toMatchObject({ code: "QUEUE_TIMEOUT" });
    held.push(await c.acquire("foreground"));
    await held[0]!.release("success");
    await held[1]!.release("success");
    held.push(await c.acquire("background"));
    expect((await c.snapshot()).inFlight).toBe(3);
  });

  it("bounds the queue per process (origin.maxQueue waiters in each)", async () => {
    const { guards } = fleet({ maxConcurrency: 1, maxQueue: 2, queueTimeoutMs: 100, clock: systemClock });
    const [a, b, c] = guards as [RedisGuard, RedisGuard, RedisGuard];
    await a.acquire("foreground");
    const waiting = [b.acquire("foreground"), b.acquire("foreground"), c.acquire("foreground")];
    await expect(b.acquire("foreground")).rejects.toMatchObject({ code: "QUEUE_FULL" });
    expect((await b.snapshot()).queued).toBe(2);
    const ends = await Promise.allSettled(waiting);
    expect(ends.map((e) => (e.status === "rejected" ? code(e.reason) : "granted"))).toEqual([
      "QUEUE_TIMEOUT",
      "QUEUE_TIMEOUT",
      "QUEUE_TIMEOUT",
    ]);
  });

  it("frees the slot of a holder that dies after its TTL", async () => {
    const clock = new ManualClock(T0);
    const { guards } = fleet({ maxConcurrency: 4, permitTtlMs: 2_000, clock });
    const [a, b] = guards as [RedisGuard, RedisGuard];
    for (let i = 0; i < 4; i++) await a.acquire("foreground"); // never released: the holder "died"
    let granted: OriginPermit | undefined;
    const waiting = b.acquire("foreground").then((p) => (granted = p));
    await sleep(60);
    expect(granted).toBeUndefined();
    clock.advance(2_000);
    await waiting;
    expect(granted).toBeDefined();
    expect((await b.snapshot()).inFlight).toBe(1);
  });
});

describe("RedisGuard: shared circuit breaker", () => {
  const settings: BreakerSettings = {
    failureThreshold: 3,
    failureRate: 0.5,
    minFailingKeys: 3,
    windowMs: 10_000,
    probeIntervalMs: 1_000,
    probeTimeoutMs: 5_000,
  };

  it("opens for all on failures reported through the three instances, one probe per interval, probe success closes for all", async () => {
    const clock = new ManualClock(T0);
    const { guards, redis } = fleet({ failureThreshold: 3, probeIntervalMs: 1_000, timeoutMs: 5_000, clock });
    const firsts = await Promise.all(guards.map((g) => g.acquire("foreground")));
    for (const [i, permit] of firsts.entries()) await permit.release("failure", `/k${i}`);

    // The record in Redis is the one breaker.ts would have written.
    const stored = async () => parseBreakerRecord(JSON.parse((await redis.get(guards[0]!.breakerKey)) ?? "null"));
    let expected = closedBreaker();
    for (let i = 0; i < 3; i++) expected = record(expected, "failure", `c${i}`, `/k${i}`, settings, T0);
    expect(await stored()).toEqual(expected);
    for (const guard of guards) {
      const refused = await guard.acquire("foreground").catch((e: unknown) => e);
      expect(code(refused)).toBe("BREAKER_OPEN");
      expect(isHerdlessError(refused) && refused.retryAfterMs).toBe(1_000);
      expect((await guard.snapshot()).breaker).toBe("open");
    }

    const probesPerInterval: number[] = [];
    for (let interval = 0; interval < 5; interval++) {
      clock.advance(1_000);
      const probes = await hammer(guards, 20, interval % 2 ? "background" : "foreground");
      expected = admit(expected, settings, clock.now(), (await stored()).probeId).record;
      expect(await stored()).toEqual(expected);
      for (let step = 0; step < 2; step++) {
        clock.advance(250);
        probes.push(...(await hammer(guards, 10)));
      }
      probesPerInterval.push(probes.length);
      for (const probe of probes) await probe.release("failure", "/probe");
      expected = record(expected, "failure", expected.probeId, "/probe", settings, clock.now());
    }
    expect(probesPerInterval).toEqual([1, 1, 1, 1, 1]);

    clock.advance(1_000);
    const [probe] = await hammer(guards, 20);
    await probe!.release("success");
    // Every process hears when the origin came back (the keys' backoff ends with it: key-backoff.ts).
    for (const guard of guards)
      expect(await guard.snapshot()).toMatchObject({ breaker: "closed", recoveredAt: clock.now() });
    const after = await Promise.all(guards.map((g) => g.acquire("foreground")));
    expect(after).toHaveLength(3);
  });

  it.each(Array.from({ length: 12 }, (_, i) => i + 1))(
    "the fleet's script judges like breaker.ts, call by call, by rate and by run (sequence %i)",
    async (seed) => {
      // Stretches of a healthy origin, a sudden outage and slow failures seconds apart, on a
      // few paths: after every release the record in Redis is the one breaker.ts writes.
      const random = mulberry32(seed);
      const regimes = [
        { failures: 0.1, gapMs: 300 },
        { failures: 0.95, gapMs: 300 },
        { failures: 0.9, gapMs: 6_000 },
      ];
      const clock = new ManualClock(T0);
      const { guards, redis } = fleet({ failureThreshold: 3, probeIntervalMs: 1_000, clock });
      const stored = async () => parseBreakerRecord(JSON.parse((await redis.get(guards[0]!.breakerKey)) ?? "null"));
      let expected = closedBreaker();
      let regime = regimes[0]!;
      let opened = 0;
      for (let call = 0; call < 300; call++) {
        if (call % 15 === 0) regime = regimes[Math.floor(random() * regimes.length)]!;
        clock.advance(Math.floor(random() * regime.gapMs));
        const outcome = random() < regime.failures ? "failure" : "success";
        const path = `/p${Math.floor(random() * 4)}`;
        const guard = guards[call % guards.length]!;
        const permit = await guard.acquire("foreground");
        await permit.release(outcome, path);
        // A success is handed back without waiting; a read on the same connection comes after it.
        await guard.snapshot();
        expected = record(expected, outcome, "", path, settings, clock.now());
        expect(await stored()).toEqual(expected);
        if (expected.state === "closed") continue;
        // Opened: start closed again, so one sequence judges many windows.
        opened += 1;
        await redis.del(guards[0]!.breakerKey);
        expected = closedBreaker();
      }
      expect(opened).toBeGreaterThan(0);
    },
  );

  it("a probe that ends neutral (its client hung up) reopens the breaker for one interval, as breaker.ts judges, instead of holding it half-open until the probe would lapse", async () => {
    const clock = new ManualClock(T0);
    const { guards, redis } = fleet({ failureThreshold: 3, probeIntervalMs: 1_000, timeoutMs: 5_000, clock });
    const stored = async () => parseBreakerRecord(JSON.parse((await redis.get(guards[0]!.breakerKey)) ?? "null"));
    for (const [i, permit] of (await Promise.all(guards.map((g) => g.acquire("foreground")))).entries())
      await permit.release("failure", `/k${i}`);
    clock.advance(1_000);
    const [probe] = await hammer(guards, 10);
    const half = await stored();
    expect(half.state).toBe("half-open");
    clock.advance(100);
    await probe!.release("neutral", "/probe");
    expect(await stored()).toEqual(record(half, "neutral", half.probeId, "/probe", settings, clock.now()));
    expect(await stored()).toMatchObject({ state: "open", nextProbeAt: clock.now() + 1_000 });
    // One interval later the next caller probes (it waited out the probe's 5 s before).
    clock.advance(1_000);
    expect(await hammer(guards, 10)).toHaveLength(1);
  });

  it("a process cut off from the fleet guard when the breaker closes (one failed command, Redis up) still hears the recovery", async () => {
    const clock = new ManualClock(T0);
    const { guards, redis } = fleet({ failureThreshold: 3, probeIntervalMs: 1_000, clock });
    const [a, , c] = guards as [RedisGuard, RedisGuard, RedisGuard];
    for (const [i, permit] of (await Promise.all(guards.map((g) => g.acquire("foreground")))).entries())
      await permit.release("failure", `/k${i}`);
    expect(await c.snapshot()).toMatchObject({ breaker: "open" });

    // One command of c fails (here: a damaged permit set) while Redis stays reachable: c
    // switches to its local share, and its keys back off, so it calls nobody for a while.
    await redis.set(c.permitsKey, "damaged");
    await (await c.acquire("foreground")).release("neutral");
    expect(c.degraded).toBe(true);
    await redis.del(c.permitsKey);

    clock.advance(1_000);
    const probe = await a.acquire("foreground");
    await probe.release("success");
    expect(await c.snapshot()).toMatchObject({ recoveredAt: clock.now() });
  });

  it("fails queued waiters in other processes as soon as the breaker opens", async () => {
    const { guards } = fleet({ maxConcurrency: 2, failureThreshold: 1, clock: systemClock });
    const [a, b] = guards as [RedisGuard, RedisGuard];
    const held = await Promise.all([a.acquire("foreground"), a.acquire("foreground")]);
    const waiting = Promise.allSettled([b.acquire("foreground"), b.acquire("background"), b.acquire("foreground")]);
    await sleep(20);
    await held[0]!.release("failure");
    const ends = await waiting;
    expect(ends.map((e) => (e.status === "rejected" ? code(e.reason) : "granted"))).toEqual([
      "BREAKER_OPEN",
      "BREAKER_OPEN",
      "BREAKER_OPEN",
    ]);
    expect((await b.snapshot()).queued).toBe(0);
  });
});

/** Timers the test fires by hand: `fire` runs those due and waits until the renewals they started have answered. */
function handTimers(clock: ManualClock) {
  const pending = new Map<number, () => void>();
  let next = 1;
  const timers: Timers = {
    setTimeout: (fn) => (pending.set(next, fn), next++),
    clearTimeout: (handle) => void pending.delete(handle as number),
  };
  const fire = async (ms: number) => {
    clock.advance(ms);
    const due = [...pending.values()];
    pending.clear();
    for (const run of due) run();
    // Each connection answers in order: a PING sent after a renewal answers after it.
    for (let round = 0; round < 3; round++) {
      await Promise.all(connections.map((c) => c.client.ping()));
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { timers, fire };
}

/** Processes (one guard per connection) on a hand-driven clock and timers, sharing one namespace; each has called the origin once. */
async function handFleet(n: number, o: FleetOptions, onDataLoss?: (guard: number, graceUntil: number) => void) {
  const clock = new ManualClock(T0);
  const { timers, fire } = handTimers(clock);
  const config = configFor(o);
  const prefix = redis.prefix();
  const guards = connections.slice(0, n).map(
    (connection, i) =>
      new RedisGuard({
        ...{ connection, config, clock, prefix, timers, fallback: new LocalGuard({ config, clock }) },
        onDataLoss: (graceUntil) => onDataLoss?.(i, graceUntil),
      }),
  );
  for (const guard of guards) await (await guard.acquire("foreground")).release("success");
  return { clock, fire, guards, leaseMs: config.origin.timeoutMs + 5_000 };
}

describe("RedisGuard: permits of long calls", () => {
  it("a permit whose body streams for 25 s keeps its slot (renewed every second): a further caller is refused; a permit taken out of the set whose slot another took stops its call", async () => {
    const { clock, fire, guards, leaseMs } = await handFleet(2, { maxConcurrency: 1, maxQueue: 0, timeoutMs: 5_000 });
    const [a, b] = guards as [RedisGuard, RedisGuard];
    const held = await a.acquire("foreground");
    const [id] = await connections[0]!.client.zrange(a.permitsKey, "0", "-1");

    for (let passed = 0; passed < 25_000; passed += 1_000) await fire(1_000);
    expect(Number(await connections[0]!.client.zscore(a.permitsKey, id!))).toBe(clock.now() + leaseMs);
    expect(code(await b.acquire("foreground").catch((e: unknown) => e))).toBe("QUEUE_FULL");
    expect(held.lost?.aborted).toBe(false);

    // Its entry lapsed (the holder stalled past its lease) and another call took the slot:
    // the holder learns at its next renewal that the cap has no room for it.
    await connections[0]!.client.zrem(a.permitsKey, id!);
    const other = await b.acquire("foreground");
    await fire(1_000);
    expect(held.lost?.aborted).toBe(true);
    expect(String(held.lost?.reason)).toMatch(/origin permit lost/);
    await held.release("neutral");
    await other.release("success");
  });
});

describe("RedisGuard: Redis loses its data while calls run (FLUSHALL)", () => {
  it("no new permit until the holders have written theirs back; the running calls keep their slots and are not stopped", async () => {
    const { fire, guards } = await handFleet(3, { maxConcurrency: 2 });
    const [a, b, c] = guards as [RedisGuard, RedisGuard, RedisGuard];
    const running = [await a.acquire("foreground"), await a.acquire("foreground")];
    await connections[0]!.client.flushall();

    // Another process asks at once: Redis holds no permit, yet the cap is full.
    const busy = (g: RedisGuard) => g.acquire("foreground", undefined, true).then(() => "granted", code);
    expect(await busy(b)).toBe("ORIGIN_BUSY");
    expect(await busy(c)).toBe("ORIGIN_BUSY");
    await fire(1_000); // the holder's renewal writes both back
    expect(await connections[0]!.client.zcard(a.permitsKey)).toBe(2);
    await fire(1_000); // the wait after the loss is over: the count is whole again
    expect(await busy(b)).toBe("ORIGIN_BUSY");
    expect(running.map((p) => p.lost?.aborted)).toEqual([false, false]);

    await running[0]!.release("success");
    const next = await b.acquire("foreground", undefined, true);
    expect(await busy(c)).toBe("ORIGIN_BUSY");
    await Promise.all([running[1]!.release("success"), next.release("success")]);
  });

  it("the first process to see the loss may be the holder itself: its renewal marks it, and the others wait", async () => {
    const { fire, guards } = await handFleet(2, { maxConcurrency: 1 });
    const [a, b] = guards as [RedisGuard, RedisGuard];
    const running = await a.acquire("foreground");
    await connections[0]!.client.flushall();
    await fire(1_000);
    expect(running.lost?.aborted).toBe(false);
    expect(code(await b.acquire("foreground", undefined, true).catch((e: unknown) => e))).toBe("ORIGIN_BUSY");
    await running.release("success");
    await fire(2_000);
    await (await b.acquire("foreground", undefined, true)).release("success");
  });

  it("a holder that could not write back in time (the cap was given to others) stops its call; one with room keeps it", async () => {
    const { fire, guards } = await handFleet(2, { maxConcurrency: 2 });
    const [a, b] = guards as [RedisGuard, RedisGuard];
    const running = await a.acquire("foreground");
    await connections[0]!.client.flushall();
    expect(code(await b.acquire("foreground", undefined, true).catch((e: unknown) => e))).toBe("ORIGIN_BUSY");
    // The holder's renewals do not reach Redis before the wait ends (a stalled process): the others take the cap.
    await connections[1]!.client.hset(a.permitsKey.replace(/permits$/, "epoch"), "graceUntil", "0");
    const taken = [await b.acquire("foreground"), await b.acquire("foreground")];
    await fire(1_000);
    expect(running.lost?.aborted).toBe(true);
    await taken[0]!.release("success");
    const again = await a.acquire("foreground");
    await connections[0]!.client.flushall();
    await fire(1_000); // room for both holders' calls: written back, neither stopped
    expect([again.lost?.aborted, taken[1]!.lost?.aborted]).toEqual([false, false]);
    expect(await connections[0]!.client.zcard(a.permitsKey)).toBe(2);
    await Promise.all([running.release("neutral"), again.release("success"), taken[1]!.release("success")]);
  });

  it("each process is told of the loss once, as it first sees it, with the end of the wait for new permits; its own look (lookForLoss) settles once it was told", async () => {
    const told: Array<[number, number]> = [];
    const { clock, fire, guards } = await handFleet(2, { maxConcurrency: 2 }, (i, until) => void told.push([i, until]));
    const [a, b] = guards as [RedisGuard, RedisGuard];
    const running = await a.acquire("foreground");
    await connections[0]!.client.flushall();
    const graceUntil = clock.now() + 2_000;
    expect(code(await b.acquire("foreground", undefined, true).catch((e: unknown) => e))).toBe("ORIGIN_BUSY");
    await fire(1_000); // the holder's renewal sees it too
    await fire(1_000);
    expect(told.sort()).toEqual([
      [0, graceUntil],
      [1, graceUntil],
    ]);
    await connections[0]!.client.flushall();
    await a.lookForLoss();
    expect(told.at(-1)).toEqual([0, clock.now() + 2_000]);
    expect(told).toHaveLength(3);
    await running.release("success");
  });

  it("a permit granted at once does not say it waited; one its caller queued for (as every caller after a loss does) does: that caller checks its key's lease before calling", async () => {
    const { guards } = fleet({ maxConcurrency: 2, clock: systemClock, permitTtlMs: 300 });
    const [a, b] = guards as [RedisGuard, RedisGuard];
    await (await b.acquire("foreground")).release("success"); // b has seen Redis's data
    const running = await a.acquire("foreground");
    expect(running.waited).toBeUndefined();
    await connections[0]!.client.flushall();
    const queued = await b.acquire("foreground");
    expect(queued.waited).toBe(true);
    await Promise.all([running.release("success"), queued.release("success")]);
  });

  it("a fresh deployment's first calls do not wait: no process had seen Redis's data before", async () => {
    const { guards } = fleet({ maxConcurrency: 2 });
    const permits = [
      await guards[0]!.acquire("foreground", undefined, true),
      await guards[1]!.acquire("foreground", undefined, true),
    ];
    await Promise.all(permits.map((p) => p.release("success")));
  });
});

/** A small seeded generator, so a failing sequence can be run again. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
