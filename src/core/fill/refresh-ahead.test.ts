import { describe, expect, it } from "vitest";
import { refreshAheadDue } from "./refresh-ahead.ts";

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
