import { describe, expect, it } from "vitest";
import { PassMarks } from "./pass-marks.ts";

describe("PassMarks", () => {
  it("gives a marked key one fill at a time and up to maxRelays relays beside it", () => {
    const marks = new PassMarks(1_000, 2);
    expect(marks.take("k", 0)).toBeUndefined();
    marks.mark("k", 0);
    const fill = marks.take("k", 1)!;
    expect(fill.way).toBe("fill");
    const relays = [marks.take("k", 1), marks.take("k", 1)];
    expect(relays.map((r) => r?.way)).toEqual(["relay", "relay"]);
    // Past maxRelays the miss waits on the fill, as an unmarked one does.
    expect(marks.take("k", 1)).toBeUndefined();
    relays[0]!.done();
    relays[0]!.done(); // once only
    expect(marks.take("k", 1)?.way).toBe("relay");
    expect(marks.take("k", 1)).toBeUndefined();
    fill.done();
    expect(marks.take("k", 1)?.way).toBe("fill");
  });

  it("relays a ranged miss first (its Range reaches the origin), filling with it only when no relay is free", () => {
    const marks = new PassMarks(1_000, 1);
    marks.mark("k", 0);
    const seek = marks.take("k", 1, true)!;
    expect(seek.way).toBe("relay");
    expect(marks.take("k", 1, true)?.way).toBe("fill");
    expect(marks.take("k", 1, true)).toBeUndefined();
    seek.done();
    expect(marks.take("k", 1)?.way).toBe("relay");
  });

  it("a key marked for its ranges (a body too large to keep) relays its ranged misses alone; the others take the usual way", () => {
    const marks = new PassMarks(1_000, 1);
    marks.mark("k", 0, "ranges");
    expect(marks.marked("k", 1)).toBe(false);
    expect(marks.take("k", 1)).toBeUndefined();
    const seek = marks.take("k", 1, true)!;
    expect(seek).toMatchObject({ way: "relay", large: true });
    expect(marks.take("k", 1, true)).toBeUndefined();
    seek.done();
    marks.mark("k", 2);
    expect(marks.take("k", 3)).toMatchObject({ way: "fill", large: false });
  });

  it("forgets a key when its mark lapses or is cleared, and can be turned off", () => {
    const marks = new PassMarks(1_000, 8);
    marks.mark("a", 0);
    marks.mark("b", 0);
    expect(marks.marked("a", 999)).toBe(true);
    expect(marks.take("a", 1_000)).toBeUndefined();
    expect(marks.marked("a", 0)).toBe(false);
    marks.clear("b");
    expect(marks.take("b", 1)).toBeUndefined();
    const off = new PassMarks(0, 8);
    off.mark("a", 0);
    expect(off.marked("a", 0)).toBe(false);
  });

  it("an uncacheable answer again extends the mark", () => {
    const marks = new PassMarks(1_000, 8);
    marks.mark("a", 0);
    marks.mark("a", 900);
    expect(marks.marked("a", 1_500)).toBe(true);
  });

  it("keeps at most maxKeys keys and maxChars characters of them, the oldest going first", () => {
    const marks = new PassMarks(60_000, 8, 3, 1_000);
    for (const key of ["a", "b", "c", "d"]) marks.mark(key, 0);
    expect(["a", "b", "c", "d"].map((k) => marks.marked(k, 1))).toEqual([false, true, true, true]);
    // Attacker-chosen long keys: bounded by their characters, whatever their number.
    const long = (i: number) => `${i}`.padEnd(400, "x");
    for (let i = 0; i < 10; i++) marks.mark(long(i), 0);
    const kept = Array.from({ length: 10 }, (_, i) => marks.marked(long(i), 1));
    expect(kept).toEqual([false, false, false, false, false, false, false, false, true, true]);
  });
});
