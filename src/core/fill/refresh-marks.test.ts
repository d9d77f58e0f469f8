import { describe, expect, it } from "vitest";
import { RefreshMarks } from "./refresh-marks.ts";

describe("RefreshMarks", () => {
  it("lets one refresh per key start until it ends", () => {
    const marks = new RefreshMarks(1_000);
    expect(marks.begin("a", 0)).toBe(true);
    expect(marks.begin("a", 10)).toBe(false);
    expect(marks.begin("b", 10)).toBe(true);
    marks.end("a");
    expect(marks.begin("a", 20)).toBe(true);
  });

  it("lets a mark lapse after ttlMs, so a refresh that never reported back cannot wedge the key", () => {
    const marks = new RefreshMarks(1_000);
    expect(marks.begin("a", 0)).toBe(true);
    expect(marks.begin("a", 999)).toBe(false);
    expect(marks.begin("a", 1_000)).toBe(true);
  });

  it("keeps at most maxKeys marks: lapsed ones are swept, live ones never grow the map", () => {
    const marks = new RefreshMarks(1_000, 2);
    expect(marks.begin("a", 0)).toBe(true);
    expect(marks.begin("b", 0)).toBe(true);
    // Full of live marks: the refresh may start, unmarked.
    expect(marks.begin("c", 0)).toBe(true);
    expect(marks.begin("c", 1)).toBe(true);
    // Once a and b lapse, c gets a mark again.
    expect(marks.begin("c", 1_000)).toBe(true);
    expect(marks.begin("c", 1_001)).toBe(false);
  });

  it("tells which copy a running refresh-ahead renews, and nothing once it ended or lapsed", () => {
    const marks = new RefreshMarks(1_000);
    expect(marks.renewing("a", 0)).toBeUndefined();
    marks.begin("a", 100, 150);
    expect(marks.renewing("a", 500)).toBe(150);
    expect(marks.renewing("a", 1_100)).toBeUndefined();
    marks.begin("a", 1_200, 1_250);
    marks.end("a");
    expect(marks.renewing("a", 1_300)).toBeUndefined();
    // A refresh that is not ahead of expiry (stale-while-revalidate) renews nothing here.
    marks.begin("b", 0);
    expect(marks.renewing("b", 10)).toBeUndefined();
  });
});
