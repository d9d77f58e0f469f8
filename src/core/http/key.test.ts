import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { normalizedAcceptEncoding } from "./accept-encoding.ts";
import { headerList } from "./http.ts";
import {
  keptSelectors,
  keyQuery,
  namedUntil,
  primaryKey,
  selectingNames,
  selectsAlike,
  variantKey,
  varyNames,
} from "./key.ts";
import { testEntry } from "../store/store-conformance.ts";

const defaults = { ignoreQuery: ["utm_*", "fbclid"], ignoreAllQuery: false };
const key = (url: string, options = defaults) => primaryKey(new URL(url), options);

describe("primary cache key", () => {
  it("lowercases the host and keeps scheme and path", () => {
    expect(key("https://EXAMPLE.com/Path/To")).toBe("GET https://example.com/Path/To");
    expect(key("http://example.com/")).not.toBe(key("https://example.com/"));
  });

  it("sorts query parameters by name so order never splits a page, keeping repeated names in order", () => {
    expect(key("https://a.test/p?b=2&a=1")).toBe(key("https://a.test/p?a=1&b=2"));
    // A repeated name is a list to many frameworks: its order is part of the request.
    expect(key("https://a.test/p?a=2&b=0&a=1")).toBe("GET https://a.test/p?a=2&a=1&b=0");
    expect(key("https://a.test/p?a=2&a=1")).not.toBe(key("https://a.test/p?a=1&a=2"));
  });

  it("drops ignored parameters, by name and by prefix", () => {
    expect(key("https://a.test/p?utm_source=x&utm_medium=y&fbclid=z&id=3")).toBe("GET https://a.test/p?id=3");
    expect(key("https://a.test/p?utm_source=x")).toBe("GET https://a.test/p");
    expect(key("https://a.test/p?utm%5Fsource=x&id=3")).toBe("GET https://a.test/p?id=3");
  });

  it("drops the whole query when told", () => {
    expect(key("https://a.test/p?id=3", { ignoreQuery: [], ignoreAllQuery: true })).toBe("GET https://a.test/p");
  });

  it("keeps distinct values distinct", () => {
    expect(key("https://a.test/p?id=3")).not.toBe(key("https://a.test/p?id=4"));
  });
});

describe("the query the origin receives is the key's", () => {
  const query = (url: string) => keyQuery(new URL(url), defaults);

  it("removes ignored parameters instead of only leaving them out of the key", () => {
    expect(query("https://a.test/p?utm_source=%3Cscript%3E&id=3")).toBe("?id=3");
  });

  it("takes a `;`-cloaked parameter away with the ignored one that hides it", () => {
    // A framework splitting on `;` would read lang=evil from the first; it never reaches the origin.
    expect(query("https://a.test/p?utm_content=x;lang=evil&lang=en")).toBe("?lang=en");
    // Inside a kept parameter the `;` stays, and so it is part of the key.
    expect(query("https://a.test/p?lang=en;utm_source=x")).toBe("?lang=en;utm_source=x");
  });

  it("reads names as a form decoder does, without exceptions: undecodable escapes, bytes past ASCII, an escaped %", () => {
    expect(query("https://a.test/p?utm_%ff=1&%zz=2&a=3")).toBe("?%zz=2&a=3");
    expect(query("https://a.test/p?fbcl%69d=1&b=2")).toBe("?b=2");
    // A name spelled with lowercase or uppercase escapes is one name: its values keep their order.
    expect(query("https://a.test/p?%c3%a9=1&b=0&%C3%A9=2")).toBe("?%c3%a9=1&%C3%A9=2&b=0");
    // `%2541` is the name `%41`, not `A`.
    expect(query("https://a.test/p?%2541=1&A=2&%41=3")).toBe("?%2541=1&A=2&%41=3");
    const accented = keyQuery(new URL("https://a.test/p?%C3%A9t%C3%A9=1&%c3%a9x=2&b=3"), {
      ignoreQuery: ["é*"],
      ignoreAllQuery: false,
    });
    expect(accented).toBe("?b=3");
  });

  it("keeps the client's bytes for kept parameters", () => {
    expect(query("https://a.test/p?q=a%20b&r=a+b&s=%7E")).toBe("?q=a%20b&r=a+b&s=%7E");
  });
});

describe("RFC 9111 §4.1 Vary: secondary key", () => {
  it("lists Vary names lowercased, sorted, deduplicated", () => {
    expect(varyNames("Accept-Language, X-Device, accept-language, Accept-Encoding")).toEqual([
      "accept-encoding",
      "accept-language",
      "x-device",
    ]);
    expect(varyNames(null)).toEqual([]);
  });

  it("recognizes Vary: * anywhere in the list", () => {
    expect(varyNames("accept, *")).toEqual(["*"]);
  });

  it("RFC 9110 §12.5.3: an encoded body is selected on Accept-Encoding, whether or not the origin said Vary", () => {
    const selecting = (fields: [string, string][]) => selectingNames(headerList(fields));
    expect(selecting([["content-encoding", "gzip"]])).toEqual(["accept-encoding"]);
    expect(
      selecting([
        ["content-encoding", "br"],
        ["vary", "Origin"],
      ]),
    ).toEqual(["accept-encoding", "origin"]);
    expect(
      selecting([
        ["content-encoding", "gzip"],
        ["vary", "accept-encoding"],
      ]),
    ).toEqual(["accept-encoding"]);
    expect(
      selecting([
        ["content-encoding", "gzip"],
        ["vary", "*"],
      ]),
    ).toEqual(["*"]);
    expect(selecting([["content-encoding", "identity"]])).toEqual([]);
    expect(selecting([["vary", "Origin"]])).toEqual(["origin"]);
  });

  it("Fetch §3.2.5: a response granting CORS to one origin is selected on Origin, whether or not it said Vary", () => {
    const selecting = (fields: [string, string][]) => selectingNames(headerList(fields));
    expect(selecting([["access-control-allow-origin", "https://evil.test"]])).toEqual(["origin"]);
    expect(selecting([["access-control-allow-origin", "null"]])).toEqual(["origin"]);
    expect(
      selecting([
        ["access-control-allow-origin", "https://app.test"],
        ["content-encoding", "gzip"],
        ["vary", "Accept-Language"],
      ]),
    ).toEqual(["accept-encoding", "accept-language", "origin"]);
    expect(
      selecting([
        ["access-control-allow-origin", "https://app.test"],
        ["vary", "Origin"],
      ]),
    ).toEqual(["origin"]);
    // Once a URL's copies are known to be made from Origin, an answer that shows no CORS keeps it.
    expect(selectingNames(headerList([]), keptSelectors({ vary: ["accept-language", "origin"] }, 0))).toEqual([
      "origin",
    ]);
    // `*` grants every origin alike: one copy serves them all.
    expect(selecting([["access-control-allow-origin", " * "]])).toEqual([]);
    expect(
      selecting([
        ["access-control-allow-origin", "https://app.test"],
        ["vary", "*"],
      ]),
    ).toEqual(["*"]);
  });

  it("a header a variant's own Vary named is kept while such a variant may be stored, then dropped", () => {
    const fr = testEntry("K fr", 0, {
      vary: ["accept-language", "origin"],
      headers: [["vary", "Accept-Language"]],
      deleteAt: 100,
    });
    const pointer = { vary: fr.vary, namedUntil: namedUntil(fr, undefined) };
    expect(pointer.namedUntil).toEqual([["accept-language", 100]]);
    // The answer to a request without the header, shown no Vary, is still that request's variant.
    expect(selectingNames(headerList([]), keptSelectors(pointer, 99))).toEqual(["accept-language", "origin"]);
    expect(keptSelectors(pointer, 100)).toEqual(["origin"]);
    // A variant selected on it only because it was kept is no sign the URL still varies on it.
    const bare = testEntry("K none", 0, { vary: ["accept-language"], deleteAt: 500 });
    expect(namedUntil(bare, pointer)).toEqual([["accept-language", 100]]);
    const de = testEntry("K de", 0, {
      vary: ["accept-language"],
      headers: [["vary", "accept-language"]],
      deleteAt: 300,
    });
    expect(namedUntil(de, pointer)).toEqual([["accept-language", 300]]);
  });

  it("RFC 9111 §4.1: a 304 may select on fewer headers than the copy, never on others", () => {
    expect(selectsAlike(headerList([]), ["accept-language"])).toBe(true);
    expect(selectsAlike(headerList([["vary", "Accept-Language"]]), ["accept-language"])).toBe(true);
    expect(selectsAlike(headerList([["vary", "Accept"]]), ["accept-language"])).toBe(false);
    expect(selectsAlike(headerList([["vary", "Accept-Language"]]), [])).toBe(false);
  });

  it("selects by the request's values, normalizing whitespace; absent only matches absent", () => {
    const names = ["accept-language"];
    const fr = variantKey("K", names, new Headers({ "accept-language": "fr, en" }));
    expect(fr).toBe(variantKey("K", names, new Headers({ "accept-language": "fr,en" })));
    expect(fr).not.toBe(variantKey("K", names, new Headers({ "accept-language": "de" })));
    expect(variantKey("K", names, new Headers())).toBe('K\n[["accept-language",null]]');
    expect(variantKey("K", names, new Headers({ "accept-language": "" }))).toBe('K\n[["accept-language",""]]');
  });

  it("normalizes a long value in time linear in its length (a header of spaces is no CPU bomb)", () => {
    const names = ["x-lang"];
    const spaces = " ".repeat(64 * 1024);
    const started = performance.now();
    const key = variantKey("K", names, new Headers({ "x-lang": `a${spaces}b,${spaces}c` }));
    // ~5 s with a backtracking regex; a few ms split and trimmed.
    expect(performance.now() - started).toBeLessThan(500);
    expect(key).toBe(`K\n[["x-lang","a${spaces}b,c"]]`);
    expect(variantKey("K", names, new Headers({ "x-lang": " a , b ,c " }))).toBe('K\n[["x-lang","a,b,c"]]');
  });

  it("selects Accept-Language without case (RFC 9110 §8.5.1: language tags are case-insensitive)", () => {
    const names = ["accept-language"];
    const lower = variantKey("K", names, new Headers({ "accept-language": "en-us, de" }));
    expect(variantKey("K", names, new Headers({ "accept-language": "eN-US, De" }))).toBe(lower);
    expect(variantKey("K", names, new Headers({ "accept-language": "de, en-us" }))).not.toBe(lower);
    // Other selecting headers keep their case: their meaning is the origin's to define.
    expect(variantKey("K", ["x-mode"], new Headers({ "x-mode": "A" }))).not.toBe(
      variantKey("K", ["x-mode"], new Headers({ "x-mode": "a" })),
    );
  });

  it("selects Accept-Encoding by the normalized value herdless forwards, so variants cannot multiply", () => {
    const names = ["accept-encoding"];
    const spellings = ["gzip, deflate, br", "br;q=1, gzip;q=0.5", "br,gzip", "*", "gzip, br, zstd, x-junk"];
    const keys = new Set(spellings.map((ae) => variantKey("K", names, new Headers({ "accept-encoding": ae }))));
    expect([...keys]).toEqual(['K\n[["accept-encoding","br, gzip"]]']);
    expect(variantKey("K", names, new Headers())).toBe(variantKey("K", names, new Headers({ "accept-encoding": "" })));
  });

  it("is the primary key when nothing varies", () => {
    expect(variantKey("K", [], new Headers({ "accept-language": "fr" }))).toBe("K");
  });

  it("cannot be reached from a path that spells a variant (the `|origin=` collision)", () => {
    const base = key("https://a.test/p");
    const victim = variantKey(base, ["origin"], new Headers({ origin: "https://good.test" }));
    const attacker = key("https://a.test/p|origin=https://good.test");
    expect(attacker).not.toBe(victim);
    expect(attacker.includes("\n")).toBe(false);
  });
});

describe("RFC 9110 §12.5.3 Accept-Encoding normalization", () => {
  it("keeps br and gzip the client accepts, best first, else identity", () => {
    expect(normalizedAcceptEncoding("gzip, deflate, br;q=0.9, zstd")).toBe("br, gzip");
    expect(normalizedAcceptEncoding("gzip")).toBe("gzip");
    expect(normalizedAcceptEncoding("x-gzip")).toBe("gzip");
    expect(normalizedAcceptEncoding("br;q=0, gzip;q=0")).toBe("identity");
    expect(normalizedAcceptEncoding("*;q=0.1, gzip;q=0")).toBe("br");
    expect(normalizedAcceptEncoding("deflate")).toBe("identity");
    // RFC 9110 §12.4.2: a weight that is not a qvalue (more than 3 decimals, negative, empty) is
    // no acceptance: a client trying to refuse gzip with `q=0.0000` is never sent gzip bytes.
    expect(normalizedAcceptEncoding("gzip;q=0.0000, br;q=-1")).toBe("identity");
    expect(normalizedAcceptEncoding("gzip;q=, br;Q=0.5")).toBe("br");
    expect(normalizedAcceptEncoding("GZIP ; q = 0.001")).toBe("gzip");
    expect(normalizedAcceptEncoding(null)).toBe("identity");
  });

  it("is idempotent: what herdless forwards selects the same variant again", () => {
    fc.assert(
      fc.property(fc.string(), (header) => {
        const once = normalizedAcceptEncoding(header);
        expect(normalizedAcceptEncoding(once)).toBe(once);
      }),
    );
  });
});

/** Reads a key back: the primary part and the selecting headers, for the round-trip property. */
function parseKey(key: string): { primary: string; selected: [string, string | null][] } {
  const newline = key.indexOf("\n");
  if (newline === -1) return { primary: key, selected: [] };
  return { primary: key.slice(0, newline), selected: JSON.parse(key.slice(newline + 1)) as [string, string | null][] };
}

describe("property: no input forges a key", () => {
  const headerName = fc
    .stringMatching(/^[a-z0-9!#$%&'*+.^_`|~-]{1,12}$/)
    .filter((n) => n !== "accept-encoding" && n !== "*");
  // Header values as a client may send them, including the characters old key formats split on.
  const headerValue = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,14}[\x21-\x7e])?$/);
  const url = fc.oneof(
    fc.webUrl({ withQueryParameters: true }),
    fc
      .tuple(fc.webUrl(), fc.string({ unit: "binary", maxLength: 20 }), fc.string({ unit: "binary", maxLength: 20 }))
      .map(([base, path, query]) => `${base}/${path}?${query}`),
  );
  const variant = fc.record({
    url,
    headers: fc.uniqueArray(fc.tuple(headerName, fc.option(headerValue, { nil: undefined })), {
      selector: ([name]) => name,
      maxLength: 4,
    }),
  });

  function keyOf(v: { url: string; headers: [string, string | undefined][] }): string | undefined {
    let parsed: URL;
    try {
      parsed = new URL(v.url);
    } catch {
      return undefined;
    }
    const present = v.headers.filter((h): h is [string, string] => h[1] !== undefined);
    return variantKey(
      primaryKey(parsed, defaults),
      varyNames(v.headers.map(([name]) => name).join(", ")),
      headerList(present),
    );
  }

  /** What a (URL, headers) pair means to a cache: the normalized URL and each selecting header's value. */
  function meaning(v: { url: string; headers: [string, string | undefined][] }): string {
    const parsed = new URL(v.url);
    const selected = [...v.headers]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => [name, value === undefined ? null : value.replace(/\s*,\s*/g, ",").trim()]);
    return JSON.stringify([primaryKey(parsed, defaults), selected]);
  }

  it("gives distinct (URL, vary headers) pairs distinct keys", () => {
    fc.assert(
      fc.property(variant, variant, (a, b) => {
        const ka = keyOf(a);
        const kb = keyOf(b);
        if (ka === undefined || kb === undefined) return;
        if (meaning(a) !== meaning(b)) expect(ka).not.toBe(kb);
        else expect(ka).toBe(kb);
      }),
      { numRuns: 1_000 },
    );
  });

  it("round-trips every header a key names", () => {
    fc.assert(
      fc.property(variant, (v) => {
        const k = keyOf(v);
        if (k === undefined) return;
        const { primary, selected } = parseKey(k);
        expect(primary).toBe(primaryKey(new URL(v.url), defaults));
        expect(primary.includes("\n")).toBe(false);
        const expected = [...v.headers]
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([name, value]) => [name, value === undefined ? null : value.replace(/\s*,\s*/g, ",").trim()]);
        expect(selected).toEqual(expected);
      }),
      { numRuns: 1_000 },
    );
  });
});
