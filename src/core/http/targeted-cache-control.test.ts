import { describe, expect, it } from "vitest";
import { parseTargetedCacheControl } from "./targeted-cache-control.ts";

describe("RFC 9213 §2.1 CDN-Cache-Control is an RFC 8941 Dictionary", () => {
  it("reads integers, strings, tokens and bare members", () => {
    const d = parseTargetedCacheControl('max-age=600, private="x-user", no-store, foo=bar');
    expect([...(d ?? [])]).toEqual([
      ["max-age", "600"],
      ["private", "x-user"],
      ["no-store", true],
      ["foo", "bar"],
    ]);
  });

  it("reads an inner list of field names and drops ?0 members", () => {
    const d = parseTargetedCacheControl('no-cache=("a" b), no-store=?0');
    expect([...(d ?? [])]).toEqual([["no-cache", "a, b"]]);
  });

  it.each([
    'max-age="10000"',
    "max-age=1.5",
    "max-age=-1",
    "max-age=?1",
    "max-age=10000, &&&&&",
    "max-age =100",
    "max-age= 100",
    "MaX-aGe=3600",
    "",
    "   ",
  ])("is invalid (ignored entirely) for %j", (value) => {
    expect(parseTargetedCacheControl(value)).toBeUndefined();
  });
});
