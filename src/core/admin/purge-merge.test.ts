import { describe, expect, it } from "vitest";
import { emptyPurges, recordPurge, type PurgeCommand, type PurgeSnapshot } from "./purge.ts";
import { coversPurges, mergePurges } from "./purge-merge.ts";

const RETAIN_MS = 1_000_000;
const keyOf = (url: string) => [`GET ${url}`];
const purged = (at: number, ...commands: PurgeCommand[]): PurgeSnapshot =>
  commands.reduce((list, command) => recordPurge(list, command, keyOf, at, RETAIN_MS), emptyPurges());

describe("merging two purge lists that drifted apart", () => {
  it("keeps every purge of both, the newest mark per target, hard at the same instant", () => {
    const a = purged(10, { urls: ["https://a.test/x"] }, { tags: ["t", "__proto__"], soft: true });
    const b = recordPurge(
      purged(10, { tags: ["t"] }),
      { urls: ["https://a.test/x"], soft: true },
      keyOf,
      20,
      RETAIN_MS,
    );
    const merged = mergePurges(a, b, 30, RETAIN_MS);
    expect(merged.keys["GET https://a.test/x"]).toEqual({ at: 20, soft: true });
    expect(merged.tags.t).toEqual({ at: 10, soft: false });
    expect(Object.hasOwn(merged.tags, "__proto__")).toBe(true);
    expect(coversPurges(merged, a, 0) && coversPurges(merged, b, 0)).toBe(true);
  });

  it("a purge of everything replaces older marks, not newer ones", () => {
    const merged = mergePurges(
      purged(10, { tags: ["old"] }, { tags: ["t"] }),
      purged(15, { all: true, soft: true }),
      30,
      RETAIN_MS,
    );
    const later = mergePurges(merged, purged(20, { tags: ["new"] }), 30, RETAIN_MS);
    expect(later).toEqual({ v: 1, all: { at: 15, soft: true }, keys: {}, tags: { new: { at: 20, soft: false } } });
  });

  it("a list misses a purge it does not hold, or holds only a softer one at the same instant", () => {
    const hard = purged(10, { urls: ["https://a.test/x"] });
    expect(coversPurges(purged(10, { urls: ["https://a.test/z"] }), hard, 0)).toBe(false);
    expect(coversPurges(purged(10, { urls: ["https://a.test/x"], soft: true }), hard, 0)).toBe(false);
    expect(coversPurges(purged(11, { all: true, soft: true }), hard, 0)).toBe(true);
    // Marks older than the retention are pruned by every writer: not missing.
    expect(coversPurges(emptyPurges(), hard, 11)).toBe(true);
  });
});
