import { describe, expect, it } from "vitest";
import {
  admit,
  closedBreaker,
  mustSave,
  parseBreakerRecord,
  record,
  type BreakerRecord,
  type BreakerSettings,
} from "./breaker.ts";

const settings: BreakerSettings = {
  failureThreshold: 3,
  failureRate: 0.5,
  minFailingKeys: 3,
  windowMs: 10_000,
  probeIntervalMs: 5_000,
  probeTimeoutMs: 2_000,
};
const T0 = 1_700_000_000_000;

/** `n` admitted non-probe calls ending with `outcome` at `now`, for keys `/k0`, `/k1`, … (or one key). */
function calls(from: BreakerRecord, n: number, now: number, outcome: "success" | "failure", oneKey?: string) {
  let current = from;
  for (let i = 0; i < n; i++) current = record(current, outcome, `call-${i}`, oneKey ?? `/k${i}`, settings, now);
  return current;
}

/** A breaker that opened at T0 (next probe at T0 + probeIntervalMs). */
const opened = () => calls(closedBreaker(), 3, T0, "failure");

describe("breaker: closed, judging a window", () => {
  it("one URL failing forever never opens it", () => {
    const current = calls(closedBreaker(), 100, T0, "failure", "/broken");
    expect(current.state).toBe("closed");
    expect(admit(current, settings, T0, "next")).toMatchObject({ admitted: true, probe: false });
  });

  it("opens once failureThreshold sick calls from minFailingKeys keys make failureRate of the window", () => {
    const two = calls(closedBreaker(), 2, T0, "failure");
    expect(two.state).toBe("closed");
    const current = record(two, "failure", "c", "/third", settings, T0);
    expect(current).toMatchObject({ state: "open", nextProbeAt: T0 + 5_000, probeId: "", buckets: [] });
  });

  it("stays closed while the sick calls, between calls that prove the origin up, are under failureRate of the window", () => {
    let current = calls(closedBreaker(), 10, T0, "success");
    for (let i = 0; i < 5; i++) {
      current = record(current, "failure", `f${i}`, `/k${i}`, settings, T0 + 100);
      current = record(current, "success", `s${i}`, `/ok`, settings, T0 + 100);
    }
    expect(current.state).toBe("closed");
    expect(calls(current, 10, T0 + 200, "failure").state).toBe("open");
  });

  it("a sudden outage after a healthy window: failureThreshold sick calls in a row from minFailingKeys keys open it, whatever the window's rate", () => {
    const healthy = calls(closedBreaker(), 50, T0, "success");
    const two = calls(healthy, 2, T0 + 100, "failure");
    expect(two.state).toBe("closed");
    // A burst of sick calls that ends at once is a few broken URLs asked together: still closed.
    expect(record(two, "failure", "c", "/k2", settings, T0 + 100).state).toBe("closed");
    // The run has lasted probeIntervalMs: an origin that goes on failing.
    const later = T0 + 100 + settings.probeIntervalMs;
    expect(record(two, "failure", "c", "/k2", settings, later).state).toBe("open");
    // Three sick calls of one key in a row are one broken URL: still closed.
    expect(calls(healthy, 3, later, "failure", "/broken").state).toBe("closed");
    // A call that proves the origin up ends the run.
    const broken = record(two, "success", "s", "/ok", settings, T0 + 100);
    expect(record(broken, "failure", "c", "/k2", settings, later).state).toBe("closed");
  });

  it("a run of sick calls is judged within windowMs of its first, and survives a save", () => {
    const healthy = calls(closedBreaker(), 50, T0, "success");
    const two = calls(healthy, 2, T0, "failure");
    expect(record(two, "failure", "c", "/k2", settings, T0 + 10_001).state).toBe("closed");
    const saved = parseBreakerRecord(JSON.parse(JSON.stringify(two)));
    expect(saved.streak).toEqual(two.streak);
    expect(mustSave(healthy, two)).toBe(true);
    expect(record(saved, "failure", "c", "/k2", settings, T0 + settings.probeIntervalMs).state).toBe("open");
  });

  it("forgets calls older than windowMs", () => {
    const old = calls(closedBreaker(), 2, T0, "failure");
    const later = record(old, "failure", "c", "/late", settings, T0 + 10_001);
    expect(later.state).toBe("closed");
    expect(later.buckets).toHaveLength(1);
  });

  it("a neutral outcome (never sent, cancelled by us) changes nothing", () => {
    const current = calls(closedBreaker(), 2, T0, "failure");
    expect(record(current, "neutral", "c", "/x", settings, T0)).toBe(current);
  });
});

describe("breaker: open and half-open", () => {
  it("admits nothing until nextProbeAt, with retryAfterMs to it (at least a second)", () => {
    const current = opened();
    const early = admit(current, settings, T0 + 1_000, "p");
    expect(early).toMatchObject({ admitted: false, probe: false, retryAfterMs: 4_000 });
    expect(early.record).toBe(current);
  });

  it("at nextProbeAt admits exactly one probe, named, and refuses every other caller", () => {
    const at = T0 + 5_000;
    const first = admit(opened(), settings, at, "probe-1");
    expect(first).toMatchObject({ admitted: true, probe: true });
    expect(first.record).toMatchObject({ state: "half-open", probeExpiresAt: at + 2_000, probeId: "probe-1" });
    expect(admit(first.record, settings, at + 1, "other")).toMatchObject({ admitted: false });
  });

  it("the probe's success closes it; its failure reopens it for another interval", () => {
    const at = T0 + 5_000;
    const half = admit(opened(), settings, at, "probe-1").record;
    expect(record(half, "success", "probe-1", "/p", settings, at + 10)).toEqual({
      ...closedBreaker(),
      recoveredAt: at + 10,
    });
    expect(record(half, "failure", "probe-1", "/p", settings, at + 10)).toMatchObject({
      state: "open",
      nextProbeAt: at + 10 + 5_000,
      probeId: "",
    });
  });

  it("the probe's neutral end (its client hung up, or it was never sent) lets the next probe go after probeIntervalMs, not when it would have lapsed", () => {
    const long = { ...settings, probeIntervalMs: 1_000, probeTimeoutMs: 10_000 };
    const at = T0 + 5_000;
    const half = admit(opened(), long, at, "probe-1").record;
    const ended = record(half, "neutral", "probe-1", "/p", long, at + 200);
    expect(ended).toMatchObject({ state: "open", nextProbeAt: at + 1_200, probeId: "" });
    expect(admit(ended, long, at + 1_199, "early")).toMatchObject({ admitted: false });
    expect(admit(ended, long, at + 1_200, "probe-2")).toMatchObject({ admitted: true, probe: true });
    // Never later than the probe would have lapsed; and another call's neutral end moves nothing.
    const short = admit(opened(), settings, at, "probe-1").record;
    expect(record(short, "neutral", "probe-1", "/p", settings, at + 100)).toMatchObject({ nextProbeAt: at + 2_000 });
    expect(record(half, "neutral", "other", "/p", long, at + 200)).toBe(half);
  });

  it("calls admitted before it opened do not move it", () => {
    const current = opened();
    expect(record(current, "failure", "late", "/a", settings, T0 + 1)).toBe(current);
    expect(record(current, "success", "late", "/a", settings, T0 + 1)).toBe(current);
  });

  it("a lapsed probe's late failure does not reopen it while the newer probe runs (no third probe)", () => {
    const at = T0 + 5_000;
    const first = admit(opened(), settings, at, "probe-1").record;
    // probe-1 never reports in time: after probeTimeoutMs the next caller probes.
    const second = admit(first, settings, at + 2_000, "probe-2");
    expect(second).toMatchObject({ admitted: true, probe: true });
    const late = record(second.record, "failure", "probe-1", "/p", settings, at + 2_001);
    expect(late).toBe(second.record);
    expect(admit(late, settings, at + 2_002, "third")).toMatchObject({ admitted: false });
    // The newer probe's own outcome still counts.
    expect(record(late, "success", "probe-2", "/p", settings, at + 2_500).state).toBe("closed");
  });
});

describe("breaker: persisted records", () => {
  it("reads back what it wrote, and Lua's {} for an empty list", () => {
    const current = calls(closedBreaker(), 2, T0, "failure");
    expect(parseBreakerRecord(JSON.parse(JSON.stringify(current)))).toEqual(current);
    const fromLua = { v: 2, state: "closed", nextProbeAt: 0, probeExpiresAt: 0, probeId: "", buckets: {} };
    expect(parseBreakerRecord(fromLua)).toEqual(closedBreaker());
  });

  it("must be saved for each failure and transition, for a success only when it starts a slice (mustSave)", () => {
    const first = calls(closedBreaker(), 1, T0, "success");
    expect(mustSave(closedBreaker(), first)).toBe(true);
    // More successes in the same slice (windowMs / 10 = 1 s) only count calls.
    const same = calls(first, 5, T0 + 500, "success");
    expect(same.buckets[0]!.calls).toBe(6);
    expect(mustSave(first, same)).toBe(false);
    // A failure in that slice, a success opening the next one, a slice sliding out: saved.
    expect(mustSave(same, record(same, "failure", "c", "/k", settings, T0 + 600))).toBe(true);
    expect(mustSave(same, record(same, "success", "c", "/k", settings, T0 + 1_000))).toBe(true);
    expect(mustSave(same, record(same, "success", "c", "/k", settings, T0 + 10_000))).toBe(true);
    // Opening, a probe, its outcome: saved.
    const open = opened();
    expect(mustSave(calls(closedBreaker(), 2, T0, "failure"), open)).toBe(true);
    const probing = admit(open, settings, T0 + settings.probeIntervalMs, "probe").record;
    expect(mustSave(open, probing)).toBe(true);
    expect(mustSave(probing, record(probing, "success", "probe", "/p", settings, T0 + 6_000))).toBe(true);
  });

  it("starts closed from anything else (an older version, damage)", () => {
    expect(parseBreakerRecord({ v: 1, state: "open", consecutiveFailures: 5 })).toEqual(closedBreaker());
    expect(parseBreakerRecord("nonsense")).toEqual(closedBreaker());
  });
});
