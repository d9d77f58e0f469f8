import { describe, expect, it } from "vitest";
import { DEFAULT_IGNORED_COOKIES, joinedCookieFields, oneCookieField, personalCookies } from "./cookies.ts";

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
    // Two Cookie fields a Fetch API Headers joined with ", " (workerd), or RFC 2965's separator.
    ["_ga=GA1.2.3, sessionid=alice", true],
    ["_ga=GA1.2.3,sessionid=alice; _gid=1", true],
    ["_ga=GA1.2.3, _gid=GA1.2.4", false],
    ["_ga=1, ; _gid=2", false],
    // Parted by commas, a request is only ever found more personal: an ignored value with a comma is the visitor's own.
    ["_ga=a,b", true],
    ["_ga=1; ,", true],
  ])("%j → %s", (value, personal) => {
    expect(personalCookies(value, DEFAULT_IGNORED_COOKIES)).toBe(personal);
  });

  it("with nothing ignored every cookie is personal", () => {
    expect(personalCookies("_ga=1", [])).toBe(true);
    expect(personalCookies(undefined, [])).toBe(false);
  });
});

describe("joinedCookieFields", () => {
  it.each([
    ["_ga=GA1.2.3, sessionid=alice", ["_ga=GA1.2.3", "sessionid=alice"]],
    ["a=1; b=2, c=3", ["a=1; b=2", "c=3"]],
    ["sessionid=alice", ["sessionid=alice"]],
    // A comma that starts no other cookie (`, name=`) is a value's own.
    ["note=a, b", ["note=a, b"]],
    ["note=a,b=c", ["note=a,b=c"]],
    ["list=x, =y", ["list=x, =y"]],
  ])("%j → %j", (value, fields) => {
    expect(joinedCookieFields(value)).toEqual(fields);
  });
});

describe("oneCookieField", () => {
  it("joins Cookie fields with '; ' where the first stood, dropping empty ones", () => {
    expect(
      oneCookieField([
        ["accept", "text/html"],
        ["cookie", "_ga=1"],
        ["x-a", "1"],
        ["Cookie", " "],
        ["cookie", "sid=a"],
      ]),
    ).toEqual([
      ["accept", "text/html"],
      ["cookie", "_ga=1; sid=a"],
      ["x-a", "1"],
    ]);
  });

  it("leaves a request with one Cookie field or none as it is", () => {
    const one: [string, string][] = [["cookie", "a=1, b=2"]];
    expect(oneCookieField(one)).toBe(one);
    expect(
      oneCookieField([
        ["cookie", ""],
        ["cookie", ""],
      ]),
    ).toEqual([]);
  });
});
