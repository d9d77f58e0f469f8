import { describe, expect, it } from "vitest";
import {
  deltaSecondsMs,
  isBare,
  MAX_DELTA_SECONDS,
  parseCacheControl,
  parseDeltaSecondsMs,
  qualifiedFields,
} from "./cache-control.ts";

const entries = (value: string | null | undefined) => [...parseCacheControl(value)];

describe("RFC 9110 §5.6.1 list syntax", () => {
  it("parses bare and valued directives, lowercasing names but not values", () => {
    expect(entries("Public, MAX-AGE=60, X-Thing=AbC")).toEqual([
      ["public", true],
      ["max-age", "60"],
      ["x-thing", "AbC"],
    ]);
  });

  it("returns an empty map for absent or empty values", () => {
    expect(entries(null)).toEqual([]);
    expect(entries(undefined)).toEqual([]);
    expect(entries("")).toEqual([]);
    expect(entries(" , ,, ")).toEqual([]);
  });

  it("skips empty elements and optional whitespace, including tabs", () => {
    expect(entries(",, no-cache ,\t, max-age=5 ,")).toEqual([
      ["no-cache", true],
      ["max-age", "5"],
    ]);
  });

  it("tolerates whitespace around =", () => {
    expect(parseCacheControl("max-age = 30").get("max-age")).toBe("30");
  });

  it("drops elements that do not start with a token", () => {
    expect(entries('=5, "x", max-age=1')).toEqual([["max-age", "1"]]);
  });

  it("reads the junk after a directive on as further directives: a `;` or a missing comma never hides private or no-store", () => {
    expect(entries("max-age=3600; private")).toEqual([
      ["max-age", ""],
      ["private", true],
    ]);
    expect(entries("max-age=60 no-store")).toEqual([
      ["max-age", ""],
      ["no-store", true],
    ]);
    expect(entries('no-cache="a" junk;no-store')).toEqual([
      ["no-cache", true],
      ["junk", true],
      ["no-store", true],
    ]);
    expect(entries('max-age=60 "x, y" / private, s-maxage=5')).toEqual([
      ["max-age", ""],
      ["private", true],
      ["s-maxage", "5"],
    ]);
  });

  it("keeps a bare directive followed by junk, spoils a valued one", () => {
    expect(parseCacheControl("no-store junk").get("no-store")).toBe(true);
    expect(parseCacheControl("max-age=60 30").get("max-age")).toBe("");
  });

  it("reads an empty value as the empty string", () => {
    expect(parseCacheControl("max-age=").get("max-age")).toBe("");
  });
});

describe("RFC 9110 §5.6.4 quoted strings", () => {
  it("keeps commas inside quotes as part of the value", () => {
    expect(entries('no-cache="set-cookie, x-user", max-age=10')).toEqual([
      ["no-cache", "set-cookie, x-user"],
      ["max-age", "10"],
    ]);
  });

  it("unescapes quoted pairs", () => {
    expect(parseCacheControl('x="a\\"b\\\\c", y=1').get("x")).toBe('a"b\\c');
    expect(parseCacheControl('x="a\\"b\\\\c", y=1').get("y")).toBe("1");
  });

  it("accepts the quoted form of delta-seconds (RFC 9111 §5.2)", () => {
    expect(deltaSecondsMs(parseCacheControl('max-age="60"'), "max-age")).toBe(60_000);
  });

  it("spoils an unterminated quoted value instead of swallowing the rest", () => {
    expect(parseCacheControl('x-ext="a, max-age=60').get("x-ext")).toBe("");
    expect(parseCacheControl('x-ext="a, max-age=60').has("max-age")).toBe(false);
    // A spoiled field list is no list: the directive covers the whole response.
    expect(parseCacheControl('private="set-cookie, max-age=60').get("private")).toBe(true);
  });
});

describe("RFC 9111 §4.2.1 duplicate directives", () => {
  it("keeps the first of duplicate non-freshness directives", () => {
    expect(parseCacheControl('x-ext="a", x-ext="b"').get("x-ext")).toBe("a");
  });

  it("RFC 9111 §5.2.2.4, §5.2.2.7: a qualified form that names no valid field is the bare form", () => {
    for (const value of ["private=", 'private=""', 'private=" , "', 'private="x-user', 'private="x-user" junk']) {
      const d = parseCacheControl(`max-age=60, ${value}`);
      expect(isBare(d, "private"), value).toBe(true);
      expect(qualifiedFields(d, "private"), value).toEqual([]);
    }
    expect(isBare(parseCacheControl('no-cache="x user"'), "no-cache")).toBe(true);
    expect(isBare(parseCacheControl('private="a", private=""'), "private")).toBe(true);
    // The same rule for directives a targeted field carries (CDN-Cache-Control's parser).
    expect(isBare(new Map([["private", ""]]), "private")).toBe(true);
    expect(qualifiedFields(parseCacheControl('private="X-User, , set-cookie"'), "private")).toEqual([
      "x-user",
      "set-cookie",
    ]);
    expect(isBare(parseCacheControl("private=x-user"), "private")).toBe(false);
  });

  it("RFC 9111 §5.2.2.4, §5.2.2.7: joins qualified no-cache and private lists; the bare form wins", () => {
    expect(parseCacheControl('private="a", private="b"').get("private")).toBe("a, b");
    expect(parseCacheControl('no-cache="a", no-cache').get("no-cache")).toBe(true);
    expect(parseCacheControl('no-cache, no-cache="a"').get("no-cache")).toBe(true);
  });

  it("keeps agreeing duplicate freshness directives", () => {
    expect(deltaSecondsMs(parseCacheControl("max-age=60, MAX-AGE=60"), "max-age")).toBe(60_000);
  });

  it("makes conflicting duplicate freshness directives invalid", () => {
    const d = parseCacheControl("max-age=60, max-age=3600, s-maxage=1, s-maxage=2");
    expect(d.has("max-age")).toBe(true);
    expect(deltaSecondsMs(d, "max-age")).toBeUndefined();
    expect(deltaSecondsMs(d, "s-maxage")).toBeUndefined();
  });
});

describe("RFC 9111 §1.2.2 delta-seconds", () => {
  it("converts to milliseconds", () => {
    expect(deltaSecondsMs(parseCacheControl("max-age=0"), "max-age")).toBe(0);
    expect(deltaSecondsMs(parseCacheControl("s-maxage=007"), "s-maxage")).toBe(7_000);
  });

  it("is undefined when absent or bare", () => {
    expect(deltaSecondsMs(parseCacheControl("public"), "max-age")).toBeUndefined();
    expect(deltaSecondsMs(parseCacheControl("max-age"), "max-age")).toBeUndefined();
  });

  it.each(["abc", "-1", "1.5", "1e3", "+5", "0x10", "5s"])("rejects max-age=%s", (value) => {
    expect(deltaSecondsMs(parseCacheControl(`max-age=${value}`), "max-age")).toBeUndefined();
  });

  it("clamps overflow to 2^31 seconds", () => {
    expect(deltaSecondsMs(parseCacheControl("max-age=99999999999999999999999"), "max-age")).toBe(
      MAX_DELTA_SECONDS * 1000,
    );
    expect(parseDeltaSecondsMs("2147483648")).toBe(2 ** 31 * 1000);
    expect(parseDeltaSecondsMs("2147483647")).toBe((2 ** 31 - 1) * 1000);
  });

  it("parses a lone value for the Age header", () => {
    expect(parseDeltaSecondsMs("12")).toBe(12_000);
    expect(parseDeltaSecondsMs(" 12")).toBeUndefined();
    expect(parseDeltaSecondsMs("")).toBeUndefined();
  });
});
