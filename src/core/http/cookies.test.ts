import { describe, expect, it } from "vitest";
import { DEFAULT_IGNORED_COOKIES, personalCookies } from "./cookies.ts";

describe("personalCookies", () => {
  it.each([
    [null, false],
    ["", false],
    [" ; ", false],
    ["_ga=GA1.2.3.4", false],
    ["_ga=GA1.2.3.4; _gid=GA1.2.5; _ga_ABC123=GS1.1; __cf_bm=x; _hjSessionUser_1=y", false],
    ["__utma=1;__utmz=2", false],
    ["_ga=1; session=abc", true],
    ["sessionid=abc", true],
    ["PHPSESSID=abc; _ga=1", true],
    // Case matters for cookie names: `_GA` is not Google's.
    ["_GA=1", true],
    // A pair without a name is a value browsers send as is: not understood, not ignored.
    ["_ga=1; secret", true],
    ["=x", true],
    // A prefix pattern matches only its prefix.
    ["_gax=1", true],
  ])("%j → %s", (value, personal) => {
    expect(personalCookies(value, DEFAULT_IGNORED_COOKIES)).toBe(personal);
  });

  it("with nothing ignored every cookie is personal", () => {
    expect(personalCookies("_ga=1", [])).toBe(true);
    expect(personalCookies(undefined, [])).toBe(false);
  });
});
