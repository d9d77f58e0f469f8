import { describe, expect, it } from "vitest";
import { primaryKey, variantKey, varyNames } from "./key.ts";

const defaults = { ignoreQuery: ["utm_*", "fbclid"], ignoreAllQuery: false };
const key = (url: string, options = defaults) => primaryKey(new URL(url), options);

describe("primary cache key", () => {
  it("lowercases the host and keeps scheme and path", () => {
    expect(key("https://EXAMPLE.com/Path/To")).toBe("GET https://example.com/Path/To");
    expect(key("http://example.com/")).not.toBe(key("https://example.com/"));
  });

  it("sorts query parameters so order never splits a page", () => {
    expect(key("https://a.test/p?b=2&a=1")).toBe(key("https://a.test/p?a=1&b=2"));
    expect(key("https://a.test/p?a=2&a=1")).toBe("GET https://a.test/p?a=1&a=2");
  });

  it("drops ignored parameters, by name and by prefix", () => {
    expect(key("https://a.test/p?utm_source=x&utm_medium=y&fbclid=z&id=3")).toBe("GET https://a.test/p?id=3");
    expect(key("https://a.test/p?utm_source=x")).toBe("GET https://a.test/p");
  });

  it("drops the whole query when told", () => {
    expect(key("https://a.test/p?id=3", { ignoreQuery: [], ignoreAllQuery: true })).toBe("GET https://a.test/p");
  });

  it("keeps distinct values distinct", () => {
    expect(key("https://a.test/p?id=3")).not.toBe(key("https://a.test/p?id=4"));
  });
});

describe("RFC 9111 §4.1 Vary: secondary key", () => {
  it("lists Vary names lowercased, sorted, deduplicated, without Accept-Encoding", () => {
    expect(varyNames("Accept-Language, X-Device, accept-language, Accept-Encoding")).toEqual([
      "accept-language",
      "x-device",
    ]);
    expect(varyNames(null)).toEqual([]);
  });

  it("recognizes Vary: * anywhere in the list", () => {
    expect(varyNames("accept, *")).toEqual(["*"]);
  });

  it("selects by the request's values, normalizing whitespace", () => {
    const names = ["accept-language"];
    const fr = variantKey("K", names, new Headers({ "accept-language": "fr, en" }));
    expect(fr).toBe(variantKey("K", names, new Headers({ "accept-language": "fr,en" })));
    expect(fr).not.toBe(variantKey("K", names, new Headers({ "accept-language": "de" })));
    expect(variantKey("K", names, new Headers())).toBe("K|accept-language=");
  });

  it("is the primary key when nothing varies", () => {
    expect(variantKey("K", [], new Headers({ "accept-language": "fr" }))).toBe("K");
  });
});
