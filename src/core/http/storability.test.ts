import { describe, expect, it } from "vitest";
import { parseConfig, routeFor, type ConfigInput } from "../config.ts";
import { hasExplicitFreshness, HEURISTICALLY_CACHEABLE, type OriginResponseInfo } from "./freshness.ts";
import { requesterOnlyFields, storability, storedFields } from "./storability.ts";
import { blamesTheRequest } from "./request-blame.ts";

const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);
const HTTP_T0 = "Wed, 01 Jan 2025 12:00:00 GMT";

function setup(defaults: ConfigInput["defaults"] = {}, cache: ConfigInput["cache"] = { retainStaleMs: 0 }) {
  const config = parseConfig({ origin: { url: "http://127.0.0.1:1" }, defaults, cache });
  return { config, route: routeFor(config, "/") };
}

function res(headers: Record<string, string>, status = 200, requestAt = T0, responseAt = T0): OriginResponseInfo {
  return { status, headers: new Headers(headers), requestAt, responseAt };
}

function store(
  headers: Record<string, string>,
  opts: { status?: number; method?: string; auth?: boolean; cookie?: boolean; defaults?: ConfigInput["defaults"] } = {},
) {
  const { route } = setup(opts.defaults);
  return storability(opts.method ?? "GET", opts.auth ?? false, opts.cookie ?? false, res(headers, opts.status), route);
}

describe("RFC 9111 §3 storing responses", () => {
  it("stores a plain 200 to GET", () => expect(store({})).toEqual({ storable: true }));

  it("stores GET only", () => {
    expect(store({}, { method: "HEAD" })).toEqual({ storable: false, reason: "method" });
    expect(store({}, { method: "POST" })).toEqual({ storable: false, reason: "method" });
  });

  it.each([
    [{ "cache-control": "no-store" }, "no-store"],
    [{ "cache-control": "public, max-age=60, no-store" }, "no-store"],
    [{ "cache-control": "private" }, "private"],
    [{ "set-cookie": "sid=1", "cache-control": "public, max-age=60" }, "set-cookie"],
    [{ "authentication-info": 'nextnonce="n1"', "cache-control": "public, max-age=60" }, "client-state"],
    [{ "authentication-info": 'rspauth="x"', "cache-control": "public, max-age=60" }, "client-state"],
    [{ "cache-control": 'max-age=60, private=""' }, "private"],
    [{ vary: "*" }, "vary-star"],
    [{ vary: "accept-encoding, *" }, "vary-star"],
    [{ vary: "Accept-Language, X-Forwarded-For" }, "vary-client"],
    // RFC 9110 §12.5.5: a member that names no field selects on something unknown.
    [{ vary: '"Accept-Language"', "cache-control": "max-age=60" }, "malformed"],
    [{ vary: "Accept-Language;q=1", "cache-control": "max-age=60" }, "malformed"],
    [{ vary: "Accept Language", "cache-control": "max-age=60" }, "malformed"],
  ] as const)("refuses %j: %s", (headers, reason) => {
    expect(store(headers)).toEqual({ storable: false, reason });
  });

  it("stores a Vary of field names in any case and spacing, with empty members", () => {
    for (const vary of ["Accept-Language", " accept-language ,, X-A ", ",", "x_custom-1"])
      expect(store({ vary, "cache-control": "max-age=60" }), vary).toEqual({ storable: true });
  });

  it("never stores 206, 226 or 304", () => {
    expect(store({ "cache-control": "max-age=60" }, { status: 206 })).toEqual({ storable: false, reason: "partial" });
    // RFC 3229: a 226 is a delta against one client's copy, however long the origin says it keeps.
    expect(store({ "cache-control": "public, max-age=60", im: "vcdiff" }, { status: 226 })).toEqual({
      storable: false,
      reason: "partial",
    });
    // RFC 9110 §14.4: a Content-Range on a 200 may label a part of the page as the whole.
    const labelled = { "cache-control": "max-age=60", "content-range": "bytes 0-3/100" };
    expect(store(labelled)).toEqual({ storable: false, reason: "partial" });
    for (const part of ["bytes 4-7/100", "BYTES 0-3/*"])
      expect(store({ ...labelled, "content-range": part }).storable, part).toBe(false);
    // The whole range, or a value that is no byte range, says nothing of the body: stored as any field.
    for (const whole of ["bytes 0-99/100", "x-store-value-1234"])
      expect(store({ ...labelled, "content-range": whole }).storable, whole).toBe(true);
    expect(store({ "cache-control": "max-age=60" }, { status: 304 })).toEqual({ storable: false, reason: "status" });
  });

  it("stores heuristically cacheable statuses without explicit freshness", () => {
    for (const status of HEURISTICALLY_CACHEABLE) expect(store({}, { status })).toEqual({ storable: true });
  });

  it("stores other statuses only with explicit freshness", () => {
    expect(store({}, { status: 302 })).toEqual({ storable: false, reason: "status" });
    expect(store({}, { status: 500 })).toEqual({ storable: false, reason: "status" });
    expect(store({ "cache-control": "max-age=60" }, { status: 302 })).toEqual({ storable: true });
    expect(store({ "cache-control": "s-maxage=60" }, { status: 307 })).toEqual({ storable: true });
    expect(store({ expires: HTTP_T0 }, { status: 302 })).toEqual({ storable: true });
  });

  it("does not let a forced TTL override no-store, private, Set-Cookie, Vary: * or 206", () => {
    const defaults = { forceTtlMs: 60_000 };
    expect(store({ "cache-control": "no-store" }, { defaults })).toMatchObject({ reason: "no-store" });
    expect(store({ "cache-control": "private" }, { defaults })).toMatchObject({ reason: "private" });
    expect(store({ "set-cookie": "a=b" }, { defaults })).toMatchObject({ reason: "set-cookie" });
    expect(store({ vary: "*" }, { defaults })).toMatchObject({ reason: "vary-star" });
    expect(store({}, { defaults, status: 206 })).toMatchObject({ reason: "partial" });
  });
});

describe("RFC 9111 §3.5 requests with credentials", () => {
  it("does not share responses to Authorization requests by default", () => {
    expect(store({ "cache-control": "max-age=60" }, { auth: true })).toEqual({
      storable: false,
      reason: "authorization",
    });
  });

  it.each(["public", "s-maxage=60", "max-age=60, must-revalidate"])(
    "shares an Authorization response marked %s",
    (cc) => {
      expect(store({ "cache-control": cc }, { auth: true })).toEqual({ storable: true });
    },
  );

  it("never shares responses to Cookie requests, even when public", () => {
    expect(store({ "cache-control": "public, s-maxage=60, must-revalidate" }, { cookie: true })).toEqual({
      storable: false,
      reason: "authorization",
    });
    expect(store({ "cache-control": "public" }, { cookie: true, auth: true })).toEqual({
      storable: false,
      reason: "authorization",
    });
  });

  it("shares both when the route sets cacheAuthorized", () => {
    const defaults = { cacheAuthorized: true };
    expect(store({}, { cookie: true, auth: true, defaults })).toEqual({ storable: true });
  });
});

describe("RFC 9111 §5.2.2.3 must-understand", () => {
  it("lets a cache that understands the status ignore no-store", () => {
    expect(store({ "cache-control": "must-understand, no-store, max-age=60" })).toEqual({ storable: true });
  });

  it("refuses a status the cache does not understand, even with explicit freshness", () => {
    expect(store({ "cache-control": "must-understand, no-store, max-age=60" }, { status: 299 })).toEqual({
      storable: false,
      reason: "must-understand",
    });
    expect(store({ "cache-control": "must-understand, max-age=60" }, { status: 299 })).toEqual({
      storable: false,
      reason: "must-understand",
    });
  });
});

describe("RFC 9111 §5.2.2.7 qualified private, §5.2.2.4 qualified no-cache", () => {
  it("stores the response without the named fields", () => {
    expect(store({ "cache-control": 'private="x-user", max-age=60' })).toEqual({ storable: true });
    expect(
      storedFields([
        ["cache-control", 'private="X-User", no-cache="x-b", max-age=60'],
        ["x-user", "ann"],
        ["x-b", "2"],
        ["x-c", "3"],
      ]),
    ).toEqual([
      ["cache-control", 'private="X-User", no-cache="x-b", max-age=60'],
      ["x-c", "3"],
    ]);
  });

  it("stores a response whose Set-Cookie is named by private=, never the cookie", () => {
    expect(store({ "cache-control": 'private="set-cookie", max-age=60', "set-cookie": "sid=1" })).toEqual({
      storable: true,
    });
    expect(storedFields([["set-cookie", "sid=1"]])).toEqual([]);
  });

  it("stores a response whose Authentication-Info is named by no-cache=, never the field", () => {
    const headers = {
      "cache-control": 'no-cache="authentication-info", max-age=60',
      "authentication-info": "nextnonce=1",
    };
    expect(store(headers)).toEqual({ storable: true });
    expect(storedFields(Object.entries(headers))).toEqual([["cache-control", headers["cache-control"]]]);
  });

  it("withholds the fields Cache-Control's qualified forms name also where CDN-Cache-Control or Surrogate-Control governs (RFC 9213)", () => {
    for (const targeted of ["cdn-cache-control", "surrogate-control"]) {
      const headers: [string, string][] = [
        [targeted, "max-age=60"],
        ["cache-control", 'private="X-User", no-cache="set-cookie", max-age=0'],
        ["x-user", "ann"],
        ["set-cookie", "sid=1"],
        ["x-page", "1"],
      ];
      expect(storedFields(headers), targeted).toEqual([headers[0], headers[1], headers[4]]);
      expect(requesterOnlyFields(headers), targeted).toEqual([headers[2], headers[3]]);
    }
  });

  it("stores Set-Cookie2 and Clear-Site-Data as the origin's Cache-Control allows (conformance: headers-store-*)", () => {
    for (const [name, value] of [
      ["set-cookie2", "a=b"],
      ["clear-site-data", '"cache"'],
    ] as const) {
      expect(store({ "cache-control": "max-age=60", [name]: value }), name).toEqual({ storable: true });
      expect(storedFields([[name, value]]), name).toEqual([[name, value]]);
    }
  });
});

describe("RFC 9111 §3 error statuses", () => {
  it("stores a 5xx with explicit freshness (max-age, s-maxage or Expires)", () => {
    expect(store({ "cache-control": "max-age=60" }, { status: 500 })).toEqual({ storable: true });
    expect(store({ "cache-control": "s-maxage=60" }, { status: 503 })).toEqual({ storable: true });
    expect(store({ expires: HTTP_T0, date: HTTP_T0 }, { status: 502 })).toEqual({ storable: true });
    expect(hasExplicitFreshness(new Headers({ "cache-control": "no-cache" }))).toBe(false);
  });
});

describe("RFC 9110 §5.5 malformed origin fields", () => {
  it("does not store a response when a field storage depends on was dropped as malformed", () => {
    const { route } = setup();
    const info = { ...res({ "cache-control": "max-age=60" }), droppedFields: ["cache-control"] };
    expect(storability("GET", false, false, info, route)).toEqual({ storable: false, reason: "malformed" });
    const harmless = { ...res({ "cache-control": "max-age=60" }), droppedFields: ["x bad"] };
    expect(storability("GET", false, false, harmless, route)).toEqual({ storable: true });
  });
});

describe("blamesTheRequest: an origin refusing the fill's own request (CPDoS)", () => {
  const ordinary: [string, string][] = [
    ["accept", "text/html"],
    ["user-agent", "Mozilla/5.0 (X11; Linux x86_64)"],
    ["x-a", "tab\tand space"],
  ];
  it("a 400/413/414 to a fill with oversized headers or a value outside visible ASCII is the request's; an ordinary fill's is the URL's", () => {
    for (const status of [400, 413, 414]) {
      expect(blamesTheRequest(status, ordinary, undefined), String(status)).toBe(false);
      expect(blamesTheRequest(status, [...ordinary, ["x-filler", "a".repeat(5_000)]], undefined)).toBe(true);
      const many = Array.from({ length: 70 }, (_, i): [string, string] => [`x-${i}`, "1"]);
      expect(blamesTheRequest(status, [...ordinary, ...many], undefined)).toBe(true);
      expect(blamesTheRequest(status, [...ordinary, ...many.slice(0, 40)], undefined)).toBe(false);
      for (const odd of ["caf\u00e9", "caf\u00c3\u00a9", "\u2603", "a\u0001b", "a\u007f"])
        expect(blamesTheRequest(status, [...ordinary, ["x-a", odd]], undefined), JSON.stringify(odd)).toBe(true);
    }
    // Statuses about the resource stay the URL's, whatever the request carried.
    for (const status of [200, 404, 410])
      expect(blamesTheRequest(status, [["x-a", "caf\u00e9"]], undefined)).toBe(false);
  });

  it("a 5xx to a fill with oversized headers or a value outside visible ASCII is the request's, with no copy too (an app crashing on what it cannot decode, a gateway choking on the size); an ordinary fill's is the URL's", () => {
    for (const status of [500, 502, 503, 504]) {
      expect(blamesTheRequest(status, [...ordinary, ["user-agent", "caf\u00e9"]], undefined), String(status)).toBe(
        true,
      );
      expect(blamesTheRequest(status, [...ordinary, ["x-filler", "a".repeat(5_000)]], undefined)).toBe(true);
      expect(blamesTheRequest(status, ordinary, undefined), String(status)).toBe(false);
    }
  });

  it("a 406 (about the client's Accept), 411, 412, 415, 416 or 417 (about a body, precondition, range or expectation a fill never sends), a 403 or 407 (a refusal of a requester that sent no credentials), a 425 (a request that may be replayed) and RFC 6585's 428, 429, 431 and 511 (never stored) are the request's", () => {
    for (const status of [403, 406, 407, 411, 412, 415, 416, 417, 425, 428, 429, 431, 511])
      expect(blamesTheRequest(status, ordinary, undefined), String(status)).toBe(true);
    for (const status of [401, 405, 409, 422])
      expect(blamesTheRequest(status, ordinary, undefined), String(status)).toBe(false);
  });

  it("with a copy stored, any 4xx or 5xx to a fill with a header no ordinary visitor sends is the request's; to a browser's fill, or with no copy, the URL's", () => {
    const browser: [string, string][] = [
      ["accept", "text/html"],
      ["user-agent", "Mozilla/5.0 (X11; Linux x86_64)"],
    ];
    for (const status of [400, 401, 404, 405, 410, 413, 414, 500, 502, 503, 504]) {
      expect(blamesTheRequest(status, [...browser, ["x-debug", "1"]], "copy"), String(status)).toBe(true);
      expect(blamesTheRequest(status, [...browser, ["x-debug", "1"]], "fleeting"), String(status)).toBe(true);
      expect(blamesTheRequest(status, [...browser, ["x-debug", "1"]], undefined), String(status)).toBe(false);
      expect(blamesTheRequest(status, browser, undefined), String(status)).toBe(false);
    }
    for (const status of [401, 404, 405, 410]) expect(blamesTheRequest(status, browser, "copy")).toBe(false);
    for (const status of [200, 204, 301, 302]) expect(blamesTheRequest(status, [["x-debug", "1"]], "copy")).toBe(false);
  });

  it("with a copy stored, a 400, 413, 414 or 5xx is the request's whatever it carried: an ordinary field's value (an Accept-Language the application crashes on) provokes them too", () => {
    const browser: [string, string][] = [
      ["accept", "text/html"],
      ["accept-language", "xx"],
    ];
    for (const status of [400, 413, 414, 500, 502, 503, 504, 599]) {
      expect(blamesTheRequest(status, browser, "copy"), String(status)).toBe(true);
      expect(blamesTheRequest(status, browser, "fleeting"), String(status)).toBe(false);
    }
  });
});
