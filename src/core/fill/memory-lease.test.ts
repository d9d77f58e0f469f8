import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { MemoryLeaseManager } from "./memory-lease.ts";

describe("in-process lease", () => {
  it("has one holder at a time and hands out increasing tokens", async () => {
    const clock = new ManualClock(0);
    const leases = new MemoryLeaseManager(clock);
    const a = await leases.acquire("k", 1_000);
    expect(a?.token).toBe(1);
    expect(await leases.acquire("k", 1_000)).toBeUndefined();
    expect(await leases.release(a!)).toBe(true);
    expect((await leases.acquire("k", 1_000))?.token).toBe(2);
  });

  it("expires, so a dead holder never wedges the key; the late holder can no longer extend or release", async () => {
    const clock = new ManualClock(0);
    const leases = new MemoryLeaseManager(clock);
    const dead = await leases.acquire("k", 1_000);
    clock.advance(1_000);
    const next = await leases.acquire("k", 1_000);
    expect(next!.token).toBeGreaterThan(dead!.token);
    expect(await leases.extend(dead!, 1_000)).toBe(false);
    expect(await leases.release(dead!)).toBe(false);
    expect(await leases.extend(next!, 5_000)).toBe(true);
    clock.advance(4_000);
    expect(await leases.acquire("k", 1_000)).toBeUndefined();
  });
});

describe("in-process lease tokens against a shared coordinator's", () => {
  it("never falls below the clock's epoch-ms, so a fallback write beats an entry a coordinator wrote earlier", async () => {
    const clock = new ManualClock(1_700_000_000_000);
    // The Durable Object's lease manager issues max(last + 1, now): an entry written a minute ago.
    const coordinatorToken = clock.now() - 60_000;
    const leases = new MemoryLeaseManager(clock);
    const first = await leases.acquire("k", 1_000);
    expect(first!.token).toBeGreaterThan(coordinatorToken);
    await leases.release(first!);
    // Still strictly increasing within one millisecond.
    expect((await leases.acquire("k", 1_000))!.token).toBe(first!.token + 1);
  });
});

describe("in-process lease memory", () => {
  it("forgets a key's fence once the clock is past its token, and tokens still only grow", async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const leases = new MemoryLeaseManager(clock);
    // A URL flood: 10,000 keys, each leased and released once, a millisecond apart.
    for (let i = 0; i < 10_000; i++) {
      const lease = await leases.acquire(`k${i}`, 15_000);
      await leases.release(lease!);
      clock.advance(1);
    }
    expect(leases.size).toBeLessThan(10);
    // An expired lease that was never released is forgotten too, once it has expired.
    const dead = await leases.acquire("dead", 15_000);
    for (let i = 0; i < 20; i++) {
      clock.advance(1_000);
      await leases.release((await leases.acquire(`later${i}`, 15_000))!);
    }
    expect(leases.size).toBeLessThan(10);
    // The key comes back with a token above every token it had.
    const again = await leases.acquire("dead", 15_000);
    expect(again!.token).toBeGreaterThan(dead!.token);
    const first = await leases.acquire("k0", 15_000);
    expect(first!.token).toBeGreaterThan(1_700_000_000_000);
  });

  it("keeps the fence while the clock has not passed the token (same millisecond)", async () => {
    const clock = new ManualClock(5_000);
    const leases = new MemoryLeaseManager(clock);
    const a = await leases.acquire("k", 1_000);
    await leases.release(a!);
    const b = await leases.acquire("k", 1_000);
    expect(b!.token).toBe(a!.token + 1);
    await leases.release(b!);
    expect(leases.size).toBe(1);
  });
});
