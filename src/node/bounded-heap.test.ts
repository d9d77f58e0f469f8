import { describe, expect, it } from "vitest";
import { heapLimitsFor, heapSizedByOperator } from "./bounded-heap.ts";

const MiB = 1024 * 1024;

describe("the heap of npx herdless", () => {
  it("is sized from cache.maxBytes: the cache, a quarter more, and 24 MiB; a young generation of 24 MiB, Node's 48 from a 256 MiB cache", () => {
    expect(heapLimitsFor(64 * MiB)).toEqual({ maxOldGenerationSizeMb: 104, maxYoungGenerationSizeMb: 24 });
    expect(heapLimitsFor(256 * MiB)).toEqual({ maxOldGenerationSizeMb: 344, maxYoungGenerationSizeMb: 48 });
    expect(heapLimitsFor(255 * MiB).maxYoungGenerationSizeMb).toBe(24);
    expect(heapLimitsFor(1)).toEqual({ maxOldGenerationSizeMb: 25, maxYoungGenerationSizeMb: 24 });
  });

  it("is left to the operator who sized it, on the command line or in NODE_OPTIONS", () => {
    expect(heapSizedByOperator(["--max-old-space-size=512"], undefined)).toBe(true);
    expect(heapSizedByOperator(["--max_old_space_size=512"], undefined)).toBe(true);
    expect(heapSizedByOperator(["--import", "tsx"], "--max-semi-space-size=4")).toBe(true);
    expect(heapSizedByOperator([], "--enable-source-maps --max-heap-size=300")).toBe(true);
    expect(heapSizedByOperator(["--import", "tsx"], "--enable-source-maps")).toBe(false);
    expect(heapSizedByOperator([], undefined)).toBe(false);
  });
});
