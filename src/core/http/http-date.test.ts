import { describe, expect, it } from "vitest";
import { parseHttpDate } from "./http-date.ts";

const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

describe("RFC 9110 §5.6.7 HTTP-date", () => {
  it("parses IMF-fixdate, RFC 850 and asctime to the same instant", () => {
    const at = Date.UTC(1994, 10, 6, 8, 49, 37);
    expect(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT")).toBe(at);
    expect(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT")).toBe(at);
    expect(parseHttpDate("Sun Nov  6 08:49:37 1994")).toBe(at);
  });

  it("reads two-digit RFC 850 years below 70 as 20xx", () => {
    expect(parseHttpDate("Wednesday, 01-Jan-25 12:00:00 GMT")).toBe(T0);
  });

  it.each([
    null,
    "0",
    "-1",
    "",
    "tomorrow",
    "Sun, 31 Feb 2025 00:00:00 GMT",
    "Sun, 06 Nov 1994 24:00:00 GMT",
    "Sun, 06 Nov 1994 08:49:37 UTC",
    "1994-11-06T08:49:37Z",
  ])("rejects %j", (value) => expect(parseHttpDate(value)).toBeUndefined());

  it("RFC 9111 §4.2: matches dates case-insensitively, as a cache recipient should", () => {
    expect(parseHttpDate("Sun, 06 nov 1994 08:49:37 GMT")).toBe(784111777000);
    expect(parseHttpDate("SUN, 06 NOV 1994 08:49:37 gmt")).toBe(784111777000);
    expect(parseHttpDate("sunday, 06-NOV-94 08:49:37 GMT")).toBe(784111777000);
    expect(parseHttpDate("SUN NOV  6 08:49:37 1994")).toBe(784111777000);
  });

  it("accepts a leap second", () => {
    expect(parseHttpDate("Wed, 31 Dec 2025 23:59:60 GMT")).toBe(Date.UTC(2026, 0, 1));
  });
});
