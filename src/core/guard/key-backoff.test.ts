import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { parseConfig, type ConfigInput } from "../config.ts";
import { isHerdlessError } from "../errors.ts";
import { backoffStoreConformance } from "./backoff-store-conformance.ts";
import { afterSickCall, backoffDelayMs, KeyBackoff, MemoryBackoffStore } from "./key-backoff.ts";

const policy = { baseMs: 1_000, maxMs: 60_000 };

function setup(breaker: ConfigInput["breaker"] = {}, random = () => 0.999_999) {
  const clock = new ManualClock(1_000_000);
  const config = parseConfig({ origin: { url: "http://127.0.0.1:8080" }, breaker });
  const store = new MemoryBackoffStore(clock);
  return { clock, store, backoff: new KeyBackoff({ store, config, clock, random }) };
}

describe("backoffDelayMs: exponential, capped, jittered", () => {
  it("doubles from the base with each sick call in a row, up to the cap", () => {
    const top = () => 0.999_999;
    expect([1, 2, 3, 4, 6, 7, 20, 1_000].map((n) => backoffDelayMs(n, policy, top))).toEqual([
      1_000, 2_000, 4_000, 8_000, 32_000, 60_000, 60_000, 60_000,
    ]);
  });

  it("keeps at least half the delay whatever the draw, and spreads the rest", () => {
    expect(backoffDelayMs(3, policy, () => 0)).toBe(2_000);
    expect(backoffDelayMs(3, policy, () => 0.5)).toBe(3_000);
    // A broken random source cannot push it outside the band.
    expect(backoffDelayMs(3, policy, () => -5)).toBe(2_000);
    expect(backoffDelayMs(3, policy, () => 7)).toBe(4_000);
  });

  it("keys that fail together retry at different times", () => {
    let seed = 1;
    const random = () => (seed = (seed * 48_271) % 2_147_483_647) / 2_147_483_647;
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelayMs(4, policy, random)));
    expect(delays.size).toBeGreaterThan(40);
  });
});

describe("afterSickCall", () => {
  it("counts the sick calls and forgets the record a cap after the backoff ends", () => {
    const first = afterSickCall(undefined, 10_000, policy, () => 0.999_999);
    expect(first).toEqual({ v: 1, failures: 1, until: 11_000, forgetAt: 71_000, failedAt: 10_000 });
    const second = afterSickCall(first, 11_500, policy, () => 0.999_999);
    expect(second).toMatchObject({ failures: 2, until: 13_500 });
  });
});

describe("afterSickCall: a sick status is asked again once before the key waits", () => {
  it("the first 503 in a row sets no wait; the second waits the base; a timeout waits at once", () => {
    const first = afterSickCall(undefined, 10_000, policy, () => 0.999_999, "status");
    expect(first).toEqual({ v: 1, failures: 1, until: 10_000, forgetAt: 70_000, failedAt: 10_000 });
    expect(afterSickCall(first, 10_100, policy, () => 0.999_999, "status")).toMatchObject({
      failures: 2,
      until: 11_100,
    });
    expect(afterSickCall(first, 10_100, policy, () => 0.999_999, "no-answer")).toMatchObject({ until: 12_100 });
  });
});

describe("afterSickCall: one request's run is its own until another request's sick call confirms it", () => {
  it("keeps the digest while every sick call came from one request; drops it, for good, at the first from another", () => {
    const top = () => 0.999_999;
    const first = afterSickCall(undefined, 10_000, policy, top, "status", "attacker");
    const again = afterSickCall(first, 10_100, policy, top, "status", "attacker");
    expect([first.askedBy, again]).toEqual(["attacker", expect.objectContaining({ failures: 2, askedBy: "attacker" })]);
    const confirmed = afterSickCall(again, 10_200, policy, top, "status", "visitor");
    expect(confirmed).toMatchObject({ failures: 3, until: 12_200 });
    expect(confirmed.askedBy).toBeUndefined();
    expect(afterSickCall(confirmed, 10_300, policy, top, "status", "attacker").askedBy).toBeUndefined();
    // A sick call whose request is not known (a record of before) confirms as ever.
    expect(afterSickCall(first, 10_100, policy, top, "status").askedBy).toBeUndefined();
  });
});

describe("KeyBackoff: a caller whose copy stands in waits until the breaker could judge", () => {
  it("after a sick status: no wait for a caller without a copy, probeIntervalMs to 1.5× for one with a copy (the breaker's run span)", async () => {
    const { clock, backoff } = setup({ probeIntervalMs: 2_000 });
    await backoff.record("k", "failure", undefined, "status");
    const checked = await backoff.check("k");
    expect(checked.refusal).toBeUndefined();
    expect(isHerdlessError(checked.held, "ORIGIN_BACKOFF")).toBe(true);
    expect(checked.held!.retryAfterMs).toBeGreaterThanOrEqual(2_000);
    expect(checked.held!.retryAfterMs).toBeLessThanOrEqual(3_000);
    clock.advance(checked.held!.retryAfterMs!);
    expect(await backoff.check("k")).toEqual({ record: checked.record });
  });

  it("held at least as long as the backoff itself; the two spread keys that failed together", async () => {
    const { backoff } = setup({ probeIntervalMs: 1_000, backoffBaseMs: 8_000, backoffMaxMs: 60_000 });
    await backoff.record("k", "failure", undefined);
    const checked = await backoff.check("k");
    expect(checked.refusal?.retryAfterMs).toBe(8_000);
    expect(checked.held?.retryAfterMs).toBe(8_000);
    const helds = new Set<number>();
    for (let i = 0; i < 20; i++) {
      await backoff.record(`/k${i}`, "failure", undefined, "status");
      helds.add((await backoff.check(`/k${i}`)).held!.retryAfterMs!);
    }
    expect(helds.size).toBeGreaterThan(10);
  });
});

describe("KeyBackoff: a sick key is not asked again until its backoff passes", () => {
  it("refuses with ORIGIN_BACKOFF and the time left, then lets one retry through", async () => {
    const { clock, backoff } = setup();
    expect(await backoff.check("k")).toEqual({});
    await backoff.record("k", "failure", undefined);
    const during = await backoff.check("k");
    expect(isHerdlessError(during.refusal, "ORIGIN_BACKOFF")).toBe(true);
    expect(during.refusal?.retryAfterMs).toBe(1_000);
    clock.advance(999);
    expect((await backoff.check("k")).refusal?.retryAfterMs).toBe(1);
    clock.advance(1);
    const after = await backoff.check("k");
    expect(after.refusal).toBeUndefined();
    expect(after.record?.failures).toBe(1);
  });

  it("a retry that fails again backs off twice as long; a success resets it", async () => {
    const { clock, backoff } = setup();
    await backoff.record("k", "failure", undefined);
    clock.advance(1_000);
    await backoff.record("k", "failure", (await backoff.check("k")).record);
    expect((await backoff.check("k")).refusal?.retryAfterMs).toBe(2_000);
    clock.advance(2_000);
    await backoff.record("k", "success", (await backoff.check("k")).record);
    expect(await backoff.check("k")).toEqual({});
    await backoff.record("k", "failure", undefined);
    expect((await backoff.check("k")).refusal?.retryAfterMs).toBe(1_000);
  });

  it("calls that say nothing about the origin (guard refusals, cancels) leave the backoff as it is", async () => {
    const { backoff } = setup();
    await backoff.record("k", "failure", undefined);
    const { record } = await backoff.check("k");
    await backoff.record("k", "neutral", record);
    expect((await backoff.check("k")).record).toEqual(record);
  });

  it("is per key: another key is asked as usual", async () => {
    const { backoff } = setup();
    await backoff.record("a", "failure", undefined);
    expect((await backoff.check("b")).refusal).toBeUndefined();
  });

  it("a key quiet for a cap after its backoff starts over from the base", async () => {
    const { clock, backoff } = setup();
    await backoff.record("k", "failure", undefined);
    clock.advance(1_000 + 60_000);
    const { record } = await backoff.check("k");
    expect(record).toBeUndefined();
    await backoff.record("k", "failure", record);
    expect((await backoff.check("k")).refusal?.retryAfterMs).toBe(1_000);
  });

  it("backoffBaseMs 0 turns it off: nothing is read or written", async () => {
    const { store, backoff } = setup({ backoffBaseMs: 0 });
    await backoff.record("k", "failure", undefined);
    expect(await store.get("k")).toBeUndefined();
    expect(await backoff.check("k")).toEqual({});
  });
});

describe("KeyBackoff: the breaker's close cuts short the backoff of keys that failed before it", () => {
  // Backoffs of 10–20 s against a 5 s probe interval: a close lets each key return within 2.5 s of it.
  function recovering() {
    const clock = new ManualClock(1_000_000);
    const config = parseConfig({
      origin: { url: "http://127.0.0.1:8080" },
      breaker: { probeIntervalMs: 5_000, backoffBaseMs: 20_000 },
    });
    const guard = { recoveredAt: undefined as number | undefined, reads: 0 };
    const recoveredAt = async () => (guard.reads++, guard.recoveredAt);
    // A draw of 0.1: 11 s of backoff.
    const backoff = new KeyBackoff({
      store: new MemoryBackoffStore(clock),
      config,
      clock,
      random: () => 0.1,
      recoveredAt,
    });
    return { clock, guard, backoff };
  }

  it("a key first asked well after the close is asked at once, however little of its own backoff is left", async () => {
    const { clock, guard, backoff } = recovering();
    await backoff.record("k", "failure", undefined);
    clock.advance(6_000);
    guard.recoveredAt = clock.now();
    // Nobody asked for the key since; 1 s of its own backoff is left, its moment after the close has passed.
    clock.advance(4_000);
    expect((await backoff.check("k")).refusal).toBeUndefined();
  });

  it("a key that failed after the close keeps its own backoff", async () => {
    const { clock, guard, backoff } = recovering();
    guard.recoveredAt = clock.now();
    clock.advance(1);
    await backoff.record("k", "failure", undefined);
    clock.advance(10_000);
    expect((await backoff.check("k")).refusal?.retryAfterMs).toBe(1_000);
  });

  it("the guard is read at most once per half probe interval, whatever the number of checks", async () => {
    const { clock, guard, backoff } = recovering();
    const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
    for (const key of keys) await backoff.record(key, "failure", undefined);
    for (let tick = 0; tick < 100; tick++) {
      clock.advance(100);
      for (const key of keys) expect((await backoff.check(key)).refusal).toBeDefined();
    }
    expect(guard.reads).toBe(4);
  });
});

describe("MemoryBackoffStore", () => {
  it("holds at most maxKeys records: forgotten ones go first, then the oldest written", async () => {
    const clock = new ManualClock(0);
    const store = new MemoryBackoffStore(clock, 2);
    const record = (forgetAt: number) => ({ v: 1 as const, failures: 1, until: forgetAt / 2, forgetAt });
    await store.set("old", record(10));
    await store.set("kept", record(1_000));
    clock.set(20);
    await store.set("new", record(1_000));
    expect(await store.get("old")).toBeUndefined();
    expect(await store.get("kept")).toBeDefined();
    await store.set("newest", record(1_000));
    expect(await store.get("kept")).toBeUndefined();
    expect(await store.get("new")).toBeDefined();
    expect(await store.get("newest")).toBeDefined();
  });
});

backoffStoreConformance("memory", async () => {
  const clock = new ManualClock(1_000_000);
  return { clock, store: new MemoryBackoffStore(clock) };
});
