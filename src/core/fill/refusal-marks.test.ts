import { describe, expect, it } from "vitest";
import type { Entry } from "../http/entry.ts";
import type { FillResult } from "./coordinator.ts";
import { RefusalMarks, type Refusal } from "./refusal-marks.ts";

const refused = (code: "BREAKER_OPEN" | "ORIGIN_BACKOFF" | "ORIGIN_STATUS", retryAfterMs?: number): Refusal => ({
  kind: "failed",
  code,
  message: code,
  collapsed: false,
  ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
});
const any = () => true;

describe("RefusalMarks", () => {
  it("an open breaker is believed until its retry time; then one scout asks while the others keep it", () => {
    const marks = new RefusalMarks(5_000, 20_000);
    expect(marks.heard("k", refused("BREAKER_OPEN", 3_000), 0)).toBe(true);
    expect(marks.standing("k", 2_999, any)).toMatchObject({ code: "BREAKER_OPEN", retryAfterMs: 1 });
    // The scout: told nothing, it asks.
    expect(marks.standing("k", 3_000, any)).toBeUndefined();
    expect(marks.standing("k", 3_001, any)?.code).toBe("BREAKER_OPEN");
    // Its answer (the origin's entry) ends the mark: everyone asks again.
    marks.heard("k", { kind: "alone" }, 3_050);
    expect(marks.standing("k", 3_051, any)).toBeUndefined();
  });

  it("a key's backoff that holds back one request alone (its own failures: `askedBy`) is never remembered for the others", () => {
    const marks = new RefusalMarks(5_000, 20_000);
    expect(marks.heard("k", { ...refused("ORIGIN_BACKOFF", 2_000), askedBy: "attacker" }, 0)).toBe(false);
    expect(marks.standing("k", 1, any)).toBeUndefined();
  });

  it("a scout that never reports lapses after scoutLapseMs: the next caller asks", () => {
    const marks = new RefusalMarks(5_000, 1_000);
    marks.heard("k", refused("BREAKER_OPEN", 500), 0);
    expect(marks.standing("k", 500, any)).toBeUndefined();
    expect(marks.standing("k", 1_499, any)).toBeDefined();
    expect(marks.standing("k", 1_500, any)).toBeUndefined();
  });

  it("believed no longer than a probe interval (breaker) or half of one (a key's backoff, cut short when the breaker closes)", () => {
    const marks = new RefusalMarks(4_000, 20_000);
    marks.heard("open", refused("BREAKER_OPEN", 60_000), 0);
    marks.heard("backing", refused("ORIGIN_BACKOFF", 60_000), 0);
    expect(marks.standing("open", 3_999, any)).toBeDefined();
    expect(marks.standing("open", 4_000, any)).toBeUndefined();
    expect(marks.standing("backing", 1_999, any)).toBeDefined();
    expect(marks.standing("backing", 2_000, any)).toBeUndefined();
  });

  it("remembers nothing else: an origin's own failure, or a refusal without a retry time", () => {
    const marks = new RefusalMarks(5_000, 20_000);
    expect(marks.heard("k", refused("ORIGIN_STATUS", 1_000), 0)).toBe(false);
    expect(marks.heard("j", refused("BREAKER_OPEN"), 0)).toBe(false);
    expect(marks.standing("k", 1, any)).toBeUndefined();
    expect(marks.standing("j", 1, any)).toBeUndefined();
  });

  it("answers only a caller whose copy serves on the refusal, and keeps no copy of the coordinator's", () => {
    const marks = new RefusalMarks(5_000, 20_000);
    const stale = { key: "k" } as unknown as Entry;
    marks.heard("k", { ...refused("BREAKER_OPEN", 3_000), stale, backoffStarted: true }, 0);
    expect(marks.standing("k", 1, () => false)).toBeUndefined();
    expect(marks.standing("k", 1, any)).toEqual({
      kind: "failed",
      code: "BREAKER_OPEN",
      message: "BREAKER_OPEN",
      collapsed: false,
      retryAfterMs: 2_999,
    });
  });

  it("tells the caller when the coordinator's own copy was stored: an older copy of the caller's does not answer for it", () => {
    const marks = new RefusalMarks(5_000, 20_000);
    const stale = { key: "k", storedAt: 500 } as unknown as Entry;
    marks.heard("k", { ...refused("BREAKER_OPEN", 3_000), stale }, 0);
    const heldAt = (storedAt: number) => (_code: string, theirsAt: number | undefined) => storedAt >= (theirsAt ?? 0);
    expect(marks.standing("k", 1, heldAt(400))).toBeUndefined();
    expect(marks.standing("k", 1, heldAt(500))?.code).toBe("BREAKER_OPEN");
  });

  it("a copy stored after a refusal was heard (the breaker closed) ends every mark heard before it, not those heard after", () => {
    const marks = new RefusalMarks(5_000, 20_000);
    marks.heard("a", refused("BREAKER_OPEN", 4_000), 0);
    marks.heard("b", refused("ORIGIN_BACKOFF", 2_000), 100);
    marks.heard("c", refused("BREAKER_OPEN", 4_000), 300);
    // A copy stored before the outage says nothing; a cached error neither.
    const entry = (storedAt: number, negative = false) =>
      ({ kind: "entry", entry: { storedAt, negative }, collapsed: false, stored: false }) as unknown as FillResult;
    marks.heard("old", entry(-60_000), 250);
    marks.heard("error", entry(240, true), 250);
    expect(["a", "b", "c"].map((key) => marks.standing(key, 260, any) !== undefined)).toEqual([true, true, true]);
    // Another data center's fill stored a copy at 200: the breaker closed then.
    marks.heard("fresh", entry(200), 260);
    expect(["a", "b", "c"].map((key) => marks.standing(key, 270, any) !== undefined)).toEqual([false, false, true]);
  });

  it("holds at most maxKeys: the oldest goes first", () => {
    const marks = new RefusalMarks(5_000, 20_000, 2);
    for (const key of ["a", "b", "c"]) marks.heard(key, refused("BREAKER_OPEN", 3_000), 0);
    expect(["a", "b", "c"].map((key) => marks.standing(key, 1, any) !== undefined)).toEqual([false, true, true]);
  });
});
