import { describe, expect, it } from "vitest";
import { refreshAheadDue, renewedAhead } from "./refresh-ahead.ts";

describe("refreshAheadDue: the last share of a fresh entry's lifetime", () => {
  // Stored at 10 s, fresh for 2 s: stale at 12 s.
  const entry = { storedAt: 10_000, staleAt: 12_000, initialAgeMs: 0, negative: false };

  it("is due only inside the window, never once stale", () => {
    expect(refreshAheadDue(entry, 0.1, 11_799)).toBe(false);
    expect(refreshAheadDue(entry, 0.1, 11_800)).toBe(true);
    expect(refreshAheadDue(entry, 0.1, 11_999)).toBe(true);
    expect(refreshAheadDue(entry, 0.1, 12_000)).toBe(false);
  });

  it("counts the age the copy arrived with: max-age=10 at Age 8 has 2 s left, its window is the last 1 s", () => {
    const aged = { storedAt: 10_000, staleAt: 12_000, initialAgeMs: 8_000, negative: false };
    expect(refreshAheadDue(aged, 0.1, 10_999)).toBe(false);
    expect(refreshAheadDue(aged, 0.1, 11_000)).toBe(true);
  });

  it("is off at 0 and for cached errors", () => {
    expect(refreshAheadDue(entry, 0, 11_999)).toBe(false);
    expect(refreshAheadDue({ ...entry, negative: true }, 0.1, 11_999)).toBe(false);
  });
});

describe("renewedAhead: an expired copy answers while a refresh-ahead renewing it runs", () => {
  const entry = { staleAt: 12_000, negative: false, mustRevalidate: false };

  it("holds only while a renewal of this copy (expiring at 12 s) runs, not of a later one", () => {
    expect(renewedAhead(entry, 0.1, 12_000)).toBe(true);
    expect(renewedAhead(entry, 0.1, 11_000)).toBe(false);
    expect(renewedAhead(entry, 0.1, undefined)).toBe(false);
  });

  it("never with refresh-ahead off, must-revalidate or a cached error", () => {
    expect(renewedAhead(entry, 0, 12_000)).toBe(false);
    expect(renewedAhead({ ...entry, mustRevalidate: true }, 0.1, 12_000)).toBe(false);
    expect(renewedAhead({ ...entry, negative: true }, 0.1, 12_000)).toBe(false);
  });
});
