import { describe, expect, it } from "vitest";
import { formatCacheStatus, ttlSeconds } from "./cache-status.ts";

describe("RFC 9211 Cache-Status", () => {
  it("writes a hit with its remaining ttl", () => {
    expect(formatCacheStatus({ hit: true, ttlSeconds: 42 })).toBe("herdless; hit; ttl=42");
  });
  it("writes a forwarded miss with the origin status, stored and collapsed", () => {
    expect(formatCacheStatus({ fwd: "uri-miss", fwdStatus: 200, stored: true, collapsed: true })).toBe(
      "herdless; fwd=uri-miss; fwd-status=200; stored; collapsed",
    );
  });
  it("quotes the key as an sf-string and appends the detail", () => {
    expect(
      formatCacheStatus({ fwd: "stale", fwdStatus: 503, key: 'GET https://a.test/"x"', detail: "stale-if-error" }),
    ).toBe('herdless; fwd=stale; fwd-status=503; key="GET https://a.test/\\"x\\""; detail=stale-if-error');
  });
  it("counts ttl down past zero once stale", () => {
    expect(ttlSeconds(10_000, 0)).toBe(10);
    expect(ttlSeconds(10_000, 12_500)).toBe(-3);
  });
});
