import { describe, expect, it } from "vitest";
import { admit, closedBreaker, record, type BreakerRecord, type BreakerSettings } from "./breaker.ts";

const settings: BreakerSettings = { failureThreshold: 3, probeIntervalMs: 5_000, probeTimeoutMs: 2_000 };
const T0 = 1_700_000_000_000;

/** Fails `n` admitted non-probe calls at `now`. */
function fail(from: BreakerRecord, n: number, now: number): BreakerRecord {
  let current = from;
  for (let i = 0; i < n; i++) current = record(current, "failure", false, settings, now);
  return current;
}

/** A breaker that opened at T0 (next probe at T0 + probeIntervalMs). */
const opened = () => fail(closedBreaker(), settings.failureThreshold, T0);

describe("breaker: closed", () => {
  it("admits everything and stays closed below the threshold", () => {
    const current = fail(closedBreaker(), settings.failureThreshold - 1, T0);
    expect(current).toMatchObject({ state: "closed", consecutiveFailures: 2 });
    const verdict = admit(current, settings, T0);
    expect(verdict).toMatchObject({ admitted: true, probe: false, retryAfterMs: 0 });
    expect(verdict.record).toBe(current);
  });

  it("opens after exactly failureThreshold consecutive failures", () => {
    const current = opened();
    expect(current).toEqual({
      v: 1,
      state: "open",
      consecutiveFailures: 3,
      nextProbeAt: T0 + 5_000,
      probeExpiresAt: 0,
    });
  });

  it("a success in between resets the count", () => {
    let current = fail(closedBreaker(), 2, T0);
    current = record(current, "success", false, settings, T0);
    expect(current).toEqual(closedBreaker());
    current = fail(current, 2, T0);
    expect(current.state).toBe("closed");
    expect(fail(current, 1, T0).state).toBe("open");
  });
});

describe("breaker: open", () => {
  it("admits nothing until nextProbeAt, with retryAfterMs to it (at least a second)", () => {
    const current = opened();
    const early = admit(current, settings, T0 + 1_000);
    expect(early).toMatchObject({ admitted: false, probe: false, retryAfterMs: 4_000 });
    expect(early.record).toBe(current);
    expect(admit(current, settings, T0 + 4_999)).toMatchObject({ admitted: false, retryAfterMs: 1_000 });
  });

  it("at nextProbeAt admits exactly one probe and refuses every other caller", () => {
    const at = T0 + 5_000;
    const first = admit(opened(), settings, at);
    expect(first).toMatchObject({ admitted: true, probe: true });
    expect(first.record).toMatchObject({ state: "half-open", probeExpiresAt: at + 2_000 });
    let current = first.record;
    for (let i = 0; i < 50; i++) {
      const other = admit(current, settings, at + i * 10);
      expect(other).toMatchObject({ admitted: false, probe: false });
      expect(other.retryAfterMs).toBeGreaterThanOrEqual(1_000);
      current = other.record;
    }
    expect(current).toBe(first.record);
  });

  it("late non-probe failures while open count but do not move the probe", () => {
    const current = fail(opened(), 4, T0 + 1_000);
    expect(current).toMatchObject({ state: "open", consecutiveFailures: 7, nextProbeAt: T0 + 5_000 });
  });

  it("late non-probe successes while open do not close it", () => {
    const current = record(opened(), "success", false, settings, T0 + 1_000);
    expect(current.state).toBe("open");
  });
});

describe("breaker: half-open", () => {
  const probing = () => admit(opened(), settings, T0 + 5_000).record;

  it("probe success closes the breaker and resets the count", () => {
    expect(record(probing(), "success", true, settings, T0 + 5_500)).toEqual(closedBreaker());
  });

  it("probe failure reopens it for another probeIntervalMs", () => {
    const reopened = record(probing(), "failure", true, settings, T0 + 5_500);
    expect(reopened).toMatchObject({ state: "open", nextProbeAt: T0 + 10_500, probeExpiresAt: 0 });
    expect(admit(reopened, settings, T0 + 10_499).admitted).toBe(false);
    expect(admit(reopened, settings, T0 + 10_500)).toMatchObject({ admitted: true, probe: true });
  });

  it("a probe that never reports lapses after probeTimeoutMs and the next caller probes", () => {
    const current = probing();
    expect(admit(current, settings, T0 + 6_999)).toMatchObject({ admitted: false, retryAfterMs: 1_000 });
    const next = admit(current, settings, T0 + 7_000);
    expect(next).toMatchObject({ admitted: true, probe: true });
    expect(next.record).toMatchObject({ state: "half-open", probeExpiresAt: T0 + 9_000 });
    expect(admit(next.record, settings, T0 + 7_001).admitted).toBe(false);
  });

  it("a late non-probe success does not close it", () => {
    const current = probing();
    expect(record(current, "success", false, settings, T0 + 5_100)).toBe(current);
  });

  it("a late non-probe failure does not reopen it nor cancel the probe in flight", () => {
    const current = probing();
    const after = record(current, "failure", false, settings, T0 + 5_100);
    expect(after).toMatchObject({ state: "half-open", probeExpiresAt: T0 + 7_000 });
    expect(admit(after, settings, T0 + 6_000).admitted).toBe(false);
    expect(record(after, "success", true, settings, T0 + 6_000)).toEqual(closedBreaker());
  });

  it("a lapsed probe reporting failure after the breaker closed counts as an ordinary failure", () => {
    const closed = record(probing(), "success", true, settings, T0 + 5_100);
    expect(record(closed, "failure", true, settings, T0 + 5_200)).toMatchObject({
      state: "closed",
      consecutiveFailures: 1,
    });
  });

  it("a full outage admits exactly one probe per interval", () => {
    let current = opened();
    let probes = 0;
    for (let now = T0; now < T0 + 60_000; now += 250) {
      const verdict = admit(current, settings, now);
      current = verdict.record;
      if (verdict.probe) {
        probes++;
        current = record(current, "failure", true, settings, now);
      }
    }
    // probes at T0+5s, +10s, …, +55s
    expect(probes).toBe(11);
  });
});
