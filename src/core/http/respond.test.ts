import { describe, expect, it } from "vitest";
import { testEntry } from "../store/store-conformance.ts";
import { fromEntry, hitHeaders, waiterHeaders } from "./respond.ts";
import type { CacheStatus } from "./cache-status.ts";

// staleAt 10 s after 0.
const entry = testEntry("K", 0);
const collapsed: CacheStatus = { fwd: "uri-miss", fwdStatus: 200, stored: false, collapsed: true };

describe("headers prepared once for the answers alike from one entry", () => {
  it("every waiter of a fetch gets what fromEntry gives it; the same built headers within a second, new ones when Age or the Cache-Status change", () => {
    const first = waiterHeaders(entry, collapsed, 1_100);
    expect(first).toEqual(fromEntry(entry, collapsed, "GET", 1_100).headers);
    expect(waiterHeaders(entry, { ...collapsed }, 1_500)).toBe(first);
    const stale: CacheStatus = { ...collapsed, fwd: "stale" };
    expect(waiterHeaders(entry, stale, 1_500)).toEqual(fromEntry(entry, stale, "GET", 1_500).headers);
    const later = waiterHeaders(entry, collapsed, 2_100);
    expect(later).toEqual(fromEntry(entry, collapsed, "GET", 2_100).headers);
    expect(later).not.toEqual(first);
  });

  it("a hit's headers and a waiter's are kept apart: neither answers with the other's Cache-Status", () => {
    const waiter = waiterHeaders(entry, collapsed, 3_000);
    const hit = hitHeaders(entry, 3_000);
    expect(hit).toEqual(fromEntry(entry, { hit: true }, "GET", 3_000).headers);
    expect(waiterHeaders(entry, collapsed, 3_000)).toBe(waiter);
    expect(hitHeaders(entry, 3_000, "stale-while-revalidate")).toEqual(
      fromEntry(entry, { hit: true, detail: "stale-while-revalidate" }, "GET", 3_000).headers,
    );
  });
});
