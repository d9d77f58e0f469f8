import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { parseConfig } from "../config.ts";
import { isHerdlessError } from "../errors.ts";
import { LocalGuard, type Timers } from "./local-guard.ts";
import type { OriginPermit, Priority } from "./origin-guard.ts";

const T0 = 1_700_000_000_000;

/** Timers driven by a ManualClock: nothing fires until the test advances time. */
class FakeTimers implements Timers {
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;
  constructor(private readonly clock: ManualClock) {}
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.set(id, { at: this.clock.now() + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  get size(): number {
    return this.pending.size;
  }
  /** Moves the clock forward, firing due timers in order at their own instants. */
  advance(ms: number): void {
    const target = this.clock.now() + ms;
    for (;;) {
      const due = [...this.pending.entries()].filter(([, t]) => t.at <= target).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.pending.delete(due[0]);
      this.clock.set(due[1].at);
      due[1].fn();
    }
    this.clock.set(target);
  }
}

interface Setup {
  maxConcurrency?: number;
  maxQueue?: number;
  queueTimeoutMs?: number;
  failureThreshold?: number;
  probeIntervalMs?: number;
  timeoutMs?: number;
}

function setup(o: Setup = {}) {
  const clock = new ManualClock(T0);
  const timers = new FakeTimers(clock);
  const config = parseConfig({
    origin: {
      url: "http://127.0.0.1:8080",
      maxConcurrency: o.maxConcurrency ?? 2,
      maxQueue: o.maxQueue ?? 100,
      queueTimeoutMs: o.queueTimeoutMs ?? 1_000,
      timeoutMs: o.timeoutMs ?? 3_000,
    },
    // One key failing is enough here: these tests are about the guard, breaker.test.ts about the window.
    breaker: {
      failureThreshold: o.failureThreshold ?? 3,
      probeIntervalMs: o.probeIntervalMs ?? 5_000,
      minFailingKeys: 1,
    },
  });
  return { clock, timers, guard: new LocalGuard({ config, clock, timers }) };
}

/** Lets pending promise callbacks run (no time passes). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Observes a promise without awaiting it. */
function track<T>(promise: Promise<T>) {
  const t: { done: boolean; value?: T; error?: unknown } = { done: false };
  promise.then(
    (value) => Object.assign(t, { done: true, value }),
    (error: unknown) => Object.assign(t, { done: true, error }),
  );
  return t;
}

const code = (error: unknown) => (isHerdlessError(error) ? error.code : String(error));

describe("LocalGuard: concurrency and queue", () => {
  it("an ifFree call takes a free slot, and is refused ORIGIN_BUSY at once rather than queued when none is free or others wait", async () => {
    const { guard } = setup({ maxConcurrency: 1 });
    const first = await guard.acquire("foreground", undefined, true);
    await expect(guard.acquire("foreground", undefined, true)).rejects.toSatisfy((e) => code(e) === "ORIGIN_BUSY");
    const queued = track(guard.acquire("foreground"));
    first.release("success");
    await settle();
    expect(queued.done).toBe(true);
    // The slot is the queued caller's now: an ifFree call does not jump the queue or wait.
    await expect(guard.acquire("foreground", undefined, true)).rejects.toSatisfy((e) => code(e) === "ORIGIN_BUSY");
    (queued.value as OriginPermit).release("success");
    expect((await guard.snapshot()).queued).toBe(0);
  });

  it("never has more than maxConcurrency permits outstanding across 500 acquirers", async () => {
    const { guard } = setup({ maxConcurrency: 4, maxQueue: 1_000 });
    let outstanding = 0;
    let maxOutstanding = 0;
    let granted = 0;
    const run = async (i: number) => {
      const permit = await guard.acquire(i % 3 === 0 ? "background" : "foreground");
      granted++;
      outstanding++;
      maxOutstanding = Math.max(maxOutstanding, outstanding);
      for (let tick = 0; tick < (i * 7919) % 13; tick++) await Promise.resolve();
      outstanding--;
      permit.release("success");
    };
    await Promise.all(Array.from({ length: 500 }, (_, i) => run(i)));
    expect(granted).toBe(500);
    expect(maxOutstanding).toBe(4);
    expect(await guard.snapshot()).toEqual({ breaker: "closed", inFlight: 0, queued: 0 });
  });

  it("serves foreground waiters first in, first out", async () => {
    const { guard } = setup({ maxConcurrency: 1 });
    const first = await guard.acquire("foreground");
    const order: number[] = [];
    const waiters = Array.from({ length: 5 }, (_, i) => guard.acquire("foreground").then((p) => (order.push(i), p)));
    expect((await guard.snapshot()).queued).toBe(5);
    let held: OriginPermit = first;
    for (const waiter of waiters) {
      held.release("success");
      held = await waiter;
    }
    held.release("success");
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });

  it("gives background waiters a slot only when no foreground waits", async () => {
    const { guard } = setup({ maxConcurrency: 1 });
    const first = await guard.acquire("foreground");
    const order: string[] = [];
    const granted = new Map<string, OriginPermit>();
    const queue = (priority: Priority, name: string) =>
      void guard.acquire(priority).then((p) => (order.push(name), granted.set(name, p)));
    queue("background", "bg1");
    queue("foreground", "fg1");
    queue("background", "bg2");
    queue("foreground", "fg2");
    let held: OriginPermit = first;
    for (let i = 0; i < 4; i++) {
      held.release("success");
      await settle();
      held = granted.get(order[i] ?? "") ?? held;
    }
    held.release("success");
    expect(order).toEqual(["fg1", "fg2", "bg1", "bg2"]);
  });

  it("rejects with QUEUE_FULL and a retryAfterMs once maxQueue callers wait", async () => {
    const { guard } = setup({ maxConcurrency: 1, maxQueue: 2 });
    await guard.acquire("foreground");
    void guard.acquire("foreground").catch(() => undefined);
    void guard.acquire("background").catch(() => undefined);
    const error = await guard.acquire("foreground").catch((e: unknown) => e);
    expect(code(error)).toBe("QUEUE_FULL");
    expect(isHerdlessError(error) && error.retryAfterMs).toBeGreaterThan(0);
  });

  it("rejects a waiter with QUEUE_TIMEOUT when its timer fires, and forgets it", async () => {
    const { guard, timers } = setup({ maxConcurrency: 1, queueTimeoutMs: 1_000 });
    const holder = await guard.acquire("foreground");
    const waiter = track(guard.acquire("foreground"));
    timers.advance(999);
    await settle();
    expect(waiter.done).toBe(false);
    timers.advance(1);
    await settle();
    expect(code(waiter.error)).toBe("QUEUE_TIMEOUT");
    expect((await guard.snapshot()).queued).toBe(0);
    holder.release("success");
    expect((await guard.snapshot()).inFlight).toBe(0);
  });

  it("removes an aborted waiter; an already-aborted signal is refused at once", async () => {
    const { guard, timers } = setup({ maxConcurrency: 1 });
    const holder = await guard.acquire("foreground");
    const controller = new AbortController();
    const aborted = track(guard.acquire("foreground", controller.signal));
    const next = track(guard.acquire("foreground"));
    controller.abort(new Error("client went away"));
    await settle();
    expect(String(aborted.error)).toContain("client went away");
    expect((await guard.snapshot()).queued).toBe(1);
    expect(timers.size).toBe(1);
    holder.release("success");
    await settle();
    expect(next.value).toBeDefined();

    const gone = AbortSignal.abort(new Error("already gone"));
    await expect(guard.acquire("foreground", gone)).rejects.toThrow("already gone");
    expect((await guard.snapshot()).queued).toBe(0);
  });

  it("treats a double release as harmless", async () => {
    const { guard } = setup({ maxConcurrency: 1, failureThreshold: 2 });
    const permit = await guard.acquire("foreground");
    const waiters = [track(guard.acquire("foreground")), track(guard.acquire("foreground"))];
    permit.release("failure");
    permit.release("failure");
    await settle();
    expect(waiters.map((w) => w.done)).toEqual([true, false]);
    expect(await guard.snapshot()).toEqual({ breaker: "closed", inFlight: 1, queued: 1 });
  });
});

describe("LocalGuard: circuit breaker", () => {
  it("opens after threshold failures, fails queued waiters at once, then lets one probe through whose success closes it", async () => {
    const { guard, timers } = setup({ maxConcurrency: 3, failureThreshold: 3, probeIntervalMs: 5_000 });
    const permits = await Promise.all([
      guard.acquire("foreground"),
      guard.acquire("foreground"),
      guard.acquire("foreground"),
    ]);
    const queued = [track(guard.acquire("foreground")), track(guard.acquire("background"))];
    permits[0]?.release("failure");
    permits[1]?.release("failure");
    await settle();
    // the freed slots went to the waiters while still closed; queue two more
    const [w0, w1] = queued.map((q) => q.value);
    const waiting = [track(guard.acquire("foreground")), track(guard.acquire("background"))];
    permits[2]?.release("failure");
    await settle();
    expect((await guard.snapshot()).breaker).toBe("open");
    expect(waiting.map((w) => code(w.error))).toEqual(["BREAKER_OPEN", "BREAKER_OPEN"]);
    expect(timers.size).toBe(0);

    const refused = await guard.acquire("foreground").catch((e: unknown) => e);
    expect(code(refused)).toBe("BREAKER_OPEN");
    expect(isHerdlessError(refused) && refused.retryAfterMs).toBe(5_000);
    w0?.release("success"); // late non-probe outcomes change nothing
    w1?.release("failure");
    expect((await guard.snapshot()).breaker).toBe("open");

    timers.advance(5_000);
    const attempts = await Promise.allSettled(Array.from({ length: 20 }, () => guard.acquire("foreground")));
    const probes = attempts.filter((a) => a.status === "fulfilled");
    expect(probes).toHaveLength(1);
    expect(attempts.filter((a) => a.status === "rejected").map((a) => code(a.reason))).toEqual(
      Array(19).fill("BREAKER_OPEN"),
    );
    expect((await guard.snapshot()).breaker).toBe("half-open");
    const probe = probes[0];
    if (probe?.status === "fulfilled") probe.value.release("success");
    expect((await guard.snapshot()).breaker).toBe("closed");
    const after = await Promise.all([guard.acquire("foreground"), guard.acquire("background")]);
    expect(after).toHaveLength(2);
  });

  it("grants at most one permit per probe interval over a long outage", async () => {
    const { guard, timers } = setup({ maxConcurrency: 4, failureThreshold: 1, probeIntervalMs: 1_000 });
    (await guard.acquire("foreground")).release("failure");
    const intervals = 30;
    const grantsPerInterval: number[] = [];
    for (let interval = 0; interval < intervals; interval++) {
      let grants = 0;
      for (let step = 0; step < 10; step++) {
        timers.advance(100);
        const attempts = await Promise.allSettled(
          Array.from({ length: 25 }, (_, i) => guard.acquire(i % 2 ? "background" : "foreground")),
        );
        for (const attempt of attempts) {
          if (attempt.status === "rejected") {
            expect(code(attempt.reason)).toBe("BREAKER_OPEN");
            continue;
          }
          grants++;
          attempt.value.release("failure");
        }
      }
      grantsPerInterval.push(grants);
    }
    expect(grantsPerInterval).toEqual(Array(intervals).fill(1));
  });

  it("never lets lapsed probes push in-flight calls past maxConcurrency", async () => {
    const { guard, timers } = setup({ maxConcurrency: 2, failureThreshold: 1, probeIntervalMs: 1_000, timeoutMs: 500 });
    (await guard.acquire("foreground")).release("failure");
    const hung: OriginPermit[] = [];
    for (let i = 0; i < 6; i++) {
      timers.advance(1_000);
      const attempt = await guard.acquire("foreground").catch((e: unknown) => e);
      if (isHerdlessError(attempt)) expect(attempt.code).toBe("BREAKER_OPEN");
      else hung.push(attempt as OriginPermit);
      expect((await guard.snapshot()).inFlight).toBeLessThanOrEqual(2);
    }
    expect(hung).toHaveLength(2);
    // The first probe lapsed: its late word moves nothing; the probe in flight decides.
    hung[0]?.release("success");
    expect((await guard.snapshot()).breaker).toBe("half-open");
    hung[1]?.release("success");
    expect((await guard.snapshot()).breaker).toBe("closed");
  });

  it("a probe that may be a long poll (a route's timeoutMs 30 s) is the only one while it may still be answered", async () => {
    const clock = new ManualClock(T0);
    const timers = new FakeTimers(clock);
    const config = parseConfig({
      origin: { url: "http://127.0.0.1:8080", maxConcurrency: 4, timeoutMs: 500 },
      breaker: { failureThreshold: 1, probeIntervalMs: 1_000, minFailingKeys: 1 },
      routes: [{ match: "/poll/*", bypass: true, timeoutMs: 30_000 }],
    });
    const guard = new LocalGuard({ config, clock, timers });
    (await guard.acquire("foreground")).release("failure");
    timers.advance(1_000);
    const probe = await guard.acquire("foreground");
    // Past origin.timeoutMs the probe may still be waiting on its long poll: no second one goes out.
    for (let i = 0; i < 25; i++) {
      timers.advance(1_000);
      const attempt = await guard.acquire("foreground").catch((e: unknown) => e);
      expect(isHerdlessError(attempt) && attempt.code).toBe("BREAKER_OPEN");
    }
    probe.release("success");
    expect((await guard.snapshot()).breaker).toBe("closed");
  });
});
