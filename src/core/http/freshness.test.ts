import { describe, expect, it } from "vitest";
import { parseConfig, routeFor, type ConfigInput } from "../config.ts";
import { effectiveDirectives, lifetimes, MAX_LIFETIME_MS, type OriginResponseInfo } from "./freshness.ts";
import { storability } from "./storability.ts";

const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);
const HTTP_T0 = "Wed, 01 Jan 2025 12:00:00 GMT";
const S = 1000;

function setup(defaults: ConfigInput["defaults"] = {}, cache: ConfigInput["cache"] = { retainStaleMs: 0 }) {
  const config = parseConfig({ origin: { url: "http://127.0.0.1:1" }, defaults, cache });
  return { config, route: routeFor(config, "/") };
}

function res(headers: Record<string, string>, status = 200, requestAt = T0, responseAt = T0): OriginResponseInfo {
  return { status, headers: new Headers(headers), requestAt, responseAt };
}

function life(
  headers: Record<string, string>,
  opts: { status?: number; defaults?: ConfigInput["defaults"]; requestAt?: number; responseAt?: number } = {},
) {
  const { config, route } = setup(opts.defaults);
  return lifetimes(res(headers, opts.status, opts.requestAt, opts.responseAt), route, config);
}

function store(
  headers: Record<string, string>,
  opts: { status?: number; method?: string; auth?: boolean; cookie?: boolean; defaults?: ConfigInput["defaults"] } = {},
) {
  const { route } = setup(opts.defaults);
  return storability(opts.method ?? "GET", opts.auth ?? false, opts.cookie ?? false, res(headers, opts.status), route);
}

describe("RFC 9213 §2.1 CDN-Cache-Control", () => {
  it("replaces Cache-Control entirely when present", () => {
    const d = effectiveDirectives(
      new Headers({ "cache-control": "no-store, max-age=5", "cdn-cache-control": "max-age=600" }),
    );
    expect(d.get("max-age")).toBe("600");
    expect(d.has("no-store")).toBe(false);
    expect(life({ "cache-control": "max-age=5", "cdn-cache-control": "max-age=600" }).staleAt).toBe(T0 + 600 * S);
  });

  it("falls back to Cache-Control when absent", () => {
    expect(life({ "cache-control": "max-age=5" }).staleAt).toBe(T0 + 5 * S);
  });

  it("can make a response unstorable for this cache only", () => {
    expect(store({ "cache-control": "max-age=60", "cdn-cache-control": "no-store" })).toEqual({
      storable: false,
      reason: "no-store",
    });
  });
});

describe("W3C Edge Architecture §3 Surrogate-Control, after CDN-Cache-Control (RFC 9213 §2.2 list)", () => {
  it("governs over Cache-Control: a long surrogate max-age over a short one, no-store over a fresh one", () => {
    expect(life({ "cache-control": "max-age=1", "surrogate-control": "max-age=3600" }).staleAt).toBe(T0 + 3600 * S);
    expect(life({ "cache-control": "max-age=3600", "surrogate-control": "max-age=1" }).staleAt).toBe(T0 + 1 * S);
    expect(store({ "cache-control": "max-age=10000", "surrogate-control": "no-store" })).toEqual({
      storable: false,
      reason: "no-store",
    });
    expect(store({ "cache-control": "no-store", "surrogate-control": "max-age=10000" })).toEqual({ storable: true });
  });

  it("takes directives targeted at herdless, leaves other devices' to them", () => {
    expect(life({ "surrogate-control": "max-age=3600;herdless" }).staleAt).toBe(T0 + 3600 * S);
    expect(store({ "cache-control": "max-age=60", "surrogate-control": "no-store;other-cdn" })).toEqual({
      storable: true,
    });
    expect(life({ "cache-control": "max-age=60", "surrogate-control": "max-age=3600;other-cdn" }).staleAt).toBe(
      T0 + 60 * S,
    );
  });

  it("ignores Expires while it governs; an empty or malformed one falls back to Cache-Control", () => {
    const past = "Wed, 01 Jan 2025 11:00:00 GMT";
    expect(life({ "surrogate-control": "max-age=3600", expires: past, date: HTTP_T0 }).staleAt).toBe(T0 + 3600 * S);
    expect(life({ "cache-control": "max-age=1", "surrogate-control": "=100" }).staleAt).toBe(T0 + 1 * S);
    expect(life({ "cache-control": "max-age=1", "surrogate-control": "" }).staleAt).toBe(T0 + 1 * S);
  });

  it('does not govern when it only asks for processing (content="ESI/1.0"): Cache-Control\'s private and no-store hold', () => {
    const esi = { "surrogate-control": 'content="ESI/1.0"' };
    expect(store({ "cache-control": "private, max-age=60", ...esi })).toEqual({ storable: false, reason: "private" });
    expect(store({ "cache-control": "no-store", ...esi })).toEqual({ storable: false, reason: "no-store" });
    expect(life({ "cache-control": "max-age=60", ...esi }).staleAt).toBe(T0 + 60 * S);
    // With a caching directive beside it, the field governs as before.
    expect(store({ "cache-control": "private", "surrogate-control": 'content="ESI/1.0", max-age=60' })).toEqual({
      storable: true,
    });
  });

  it("yields to a valid CDN-Cache-Control", () => {
    expect(life({ "cdn-cache-control": "max-age=60", "surrogate-control": "max-age=3600" }).staleAt).toBe(T0 + 60 * S);
  });
});

describe("RFC 9111 §4.2.1 freshness lifetime", () => {
  it("prefers s-maxage over max-age over Expires", () => {
    const expires = "Wed, 01 Jan 2025 13:00:00 GMT";
    expect(life({ "cache-control": "max-age=60, s-maxage=120", expires, date: HTTP_T0 }).staleAt).toBe(T0 + 120 * S);
    expect(life({ "cache-control": "max-age=60", expires, date: HTTP_T0 }).staleAt).toBe(T0 + 60 * S);
    expect(life({ expires, date: HTTP_T0 }).staleAt).toBe(T0 + 3600 * S);
  });

  it("computes Expires relative to Date, not to arrival", () => {
    // Date and Expires 60 s apart: lifetime 60 s whatever our clock says (and the origin's clock adds no age).
    const h = { date: "Wed, 01 Jan 2025 11:59:50 GMT", expires: "Wed, 01 Jan 2025 12:00:50 GMT" };
    expect(life(h).initialAgeMs).toBe(0);
    expect(life(h).staleAt).toBe(T0 + 60 * S);
    const later = { date: HTTP_T0, expires: "Wed, 01 Jan 2025 12:01:00 GMT" };
    expect(life(later, { responseAt: T0 + 5 * S, requestAt: T0 + 5 * S }).staleAt).toBe(T0 + 65 * S);
  });

  it("uses arrival time for Expires when Date is absent", () => {
    expect(life({ expires: "Wed, 01 Jan 2025 12:00:30 GMT" }).staleAt).toBe(T0 + 30 * S);
  });

  it("treats an invalid or past Expires as already stale", () => {
    expect(life({ expires: "0", date: HTTP_T0 }, { defaults: { defaultTtlMs: 60_000 } }).staleAt).toBe(T0);
    expect(life({ expires: "Tue, 31 Dec 2024 12:00:00 GMT", date: HTTP_T0 }).staleAt).toBe(T0);
  });

  it("treats an invalid or conflicting max-age as stale rather than falling through", () => {
    const expires = "Wed, 01 Jan 2025 13:00:00 GMT";
    expect(life({ "cache-control": "max-age=abc", expires }).staleAt).toBe(T0);
    expect(life({ "cache-control": "max-age=60, max-age=120", expires }).staleAt).toBe(T0);
  });

  it("makes bare no-cache stale at once and must-revalidate", () => {
    const t = life(
      { "cache-control": "no-cache, max-age=600, stale-while-revalidate=60" },
      { defaults: { defaultTtlMs: 60_000 } },
    );
    expect(t.staleAt).toBe(T0);
    expect(t.mustRevalidate).toBe(true);
    expect(t.swrUntil).toBe(T0);
  });

  it("RFC 9111 §5.2.2.4: qualified no-cache keeps the lifetime (its fields are not stored)", () => {
    const t = life({ "cache-control": 'no-cache="x-a", max-age=600' });
    expect(t.staleAt).toBe(T0 + 600 * S);
    expect(t.mustRevalidate).toBe(false);
  });

  it("lets forceTtlMs override everything the origin says about lifetime", () => {
    const defaults = { forceTtlMs: 30_000 };
    expect(life({ "cache-control": "max-age=600, s-maxage=900" }, { defaults }).staleAt).toBe(T0 + 30 * S);
    expect(life({ "cache-control": "no-cache" }, { defaults }).staleAt).toBe(T0 + 30 * S);
  });

  it("gives the operator's TTLs to answers below 400 only: an error a client can provoke is never pinned for everyone", () => {
    for (const status of [404, 405, 410, 414, 500, 501]) {
      expect(life({}, { status, defaults: { forceTtlMs: 30_000 } }).staleAt, `${status}`).toBe(T0);
      expect(life({}, { status, defaults: { defaultTtlMs: 30_000 } }).staleAt, `${status}`).toBe(T0);
    }
    // The origin's own word still counts: explicit freshness, or the Last-Modified heuristic.
    expect(life({ "cache-control": "max-age=5" }, { status: 404, defaults: { forceTtlMs: 30_000 } }).staleAt).toBe(
      T0 + 5 * S,
    );
    const lastModified = { date: HTTP_T0, "last-modified": "Wed, 01 Jan 2025 02:00:00 GMT" };
    expect(life(lastModified, { status: 404, defaults: { defaultTtlMs: 30_000 } }).staleAt).toBe(T0 + 3600 * S);
    expect(life({}, { status: 301, defaults: { defaultTtlMs: 30_000 } }).staleAt).toBe(T0 + 30 * S);
  });

  it("keeps deleteAt past staleAt by retainStaleMs, and at least 1 ms", () => {
    const { config, route } = setup({}, { retainStaleMs: 5_000 });
    expect(lifetimes(res({ "cache-control": "max-age=60" }), route, config).deleteAt).toBe(T0 + 65 * S);
    expect(life({ "cache-control": "max-age=0" }).deleteAt).toBe(T0 + 1);
  });
});

describe("RFC 9111 §4.2.2 heuristic freshness", () => {
  const lastModified = "Wed, 01 Jan 2025 02:00:00 GMT"; // 10 h before Date

  it("uses 10% of Date − Last-Modified for heuristically cacheable statuses", () => {
    expect(life({ date: HTTP_T0, "last-modified": lastModified }).staleAt).toBe(T0 + 3600 * S);
    expect(life({ date: HTTP_T0, "last-modified": lastModified }, { status: 404 }).staleAt).toBe(T0 + 3600 * S);
  });

  it("caps the heuristic at one day", () => {
    expect(life({ date: HTTP_T0, "last-modified": "Sun, 01 Jan 2023 00:00:00 GMT" }).staleAt).toBe(T0 + 86_400 * S);
  });

  it("gives no heuristic lifetime to other statuses", () => {
    expect(life({ date: HTTP_T0, "last-modified": lastModified }, { status: 302 }).staleAt).toBe(T0);
    expect(life({}, { status: 500, defaults: { defaultTtlMs: 60_000 } }).staleAt).toBe(T0);
  });

  it("applies to any final status marked public, by the Last-Modified rule only (RFC 9111 §4.2.2, §3)", () => {
    expect(
      life({ date: HTTP_T0, "last-modified": lastModified, "cache-control": "public" }, { status: 599 }).staleAt,
    ).toBe(T0 + 3600 * S);
    expect(store({ "cache-control": "public" }, { status: 599 })).toEqual({ storable: true });
    expect(store({}, { status: 599 }).storable).toBe(false);
    expect(life({ "cache-control": "public" }, { status: 500, defaults: { defaultTtlMs: 60_000 } }).staleAt).toBe(T0);
  });

  it("is not used when explicit freshness or no-cache is present", () => {
    expect(life({ date: HTTP_T0, "last-modified": lastModified, "cache-control": "max-age=5" }).staleAt).toBe(
      T0 + 5 * S,
    );
    expect(life({ date: HTTP_T0, "last-modified": lastModified, "cache-control": "no-cache" }).staleAt).toBe(T0);
  });

  it("is zero without Last-Modified or with a future one", () => {
    expect(life({ date: HTTP_T0 }).staleAt).toBe(T0);
    expect(life({ date: HTTP_T0, "last-modified": "Thu, 02 Jan 2025 00:00:00 GMT" }).staleAt).toBe(T0);
  });

  it("uses the route's defaultTtlMs instead of the Last-Modified rule", () => {
    const defaults = { defaultTtlMs: 42_000 };
    expect(life({ date: HTTP_T0, "last-modified": lastModified }, { defaults }).staleAt).toBe(T0 + 42 * S);
    expect(life({ "cache-control": "max-age=5" }, { defaults }).staleAt).toBe(T0 + 5 * S);
  });
});

describe("RFC 9111 §4.2.3 age calculation", () => {
  it("is zero for a prompt, undated response", () => {
    expect(life({ "cache-control": "max-age=60" }).initialAgeMs).toBe(0);
  });

  it("does not trust the origin's clock: a Date in the past adds no age (skew would make every response stale)", () => {
    const t = life({ "cache-control": "max-age=60", date: "Wed, 01 Jan 2025 11:59:40 GMT" });
    expect(t.initialAgeMs).toBe(0);
    expect(t.staleAt).toBe(T0 + 60 * S);
  });

  it("never has a negative apparent age when Date is in the future", () => {
    expect(life({ "cache-control": "max-age=60", date: "Wed, 01 Jan 2025 12:05:00 GMT" }).initialAgeMs).toBe(0);
  });

  it("adds the response delay to the Age header", () => {
    const t = life({ "cache-control": "max-age=60", age: "10", date: HTTP_T0 }, { requestAt: T0 - 3 * S });
    expect(t.initialAgeMs).toBe(13 * S);
    expect(t.staleAt).toBe(T0 + 47 * S);
  });

  it("counts Age plus the measured response delay, whatever Date says", () => {
    const h = { "cache-control": "max-age=60", age: "5", date: "Wed, 01 Jan 2025 11:59:30 GMT" };
    expect(life(h, { requestAt: T0 - 1 * S }).initialAgeMs).toBe(6 * S);
  });

  it("ignores an invalid Age and uses the first of several", () => {
    expect(life({ "cache-control": "max-age=60", age: "abc" }).initialAgeMs).toBe(0);
    expect(life({ "cache-control": "max-age=60", age: "7, 100" }).initialAgeMs).toBe(7 * S);
  });

  it("never puts staleAt before arrival when the response came in too old", () => {
    const t = life({ "cache-control": "max-age=60, stale-while-revalidate=30", age: "100" });
    expect(t.staleAt).toBe(T0);
    expect(t.swrUntil).toBe(T0);
    // The instant it went stale is kept apart, for Cache-Status's ttl (RFC 9211 §2.4): -40 s.
    expect(t.expiredAt).toBe(T0 - 40 * S);
    expect(life({ "cache-control": "max-age=60", age: "10" }).expiredAt).toBeUndefined();
  });
});

describe("RFC 5861 stale-while-revalidate and stale-if-error", () => {
  it("adds the origin's windows to staleAt", () => {
    const t = life({ "cache-control": "max-age=60, stale-while-revalidate=30, stale-if-error=600" });
    expect(t.swrUntil).toBe(T0 + 90 * S);
    expect(t.sieUntil).toBe(T0 + 660 * S);
    expect(t.deleteAt).toBe(T0 + 660 * S);
    expect(t.mustRevalidate).toBe(false);
  });

  it("adds the route's grace on top of the origin's windows", () => {
    const defaults = { staleWhileRevalidateMs: 5_000, staleIfErrorMs: 7_000 };
    const t = life({ "cache-control": "max-age=60, stale-while-revalidate=30, stale-if-error=60" }, { defaults });
    expect(t.swrUntil).toBe(T0 + 95 * S);
    expect(t.sieUntil).toBe(T0 + 127 * S);
    expect(life({ "cache-control": "max-age=60" }, { defaults }).swrUntil).toBe(T0 + 65 * S);
  });

  it("ignores malformed window values but keeps the grace", () => {
    const t = life(
      { "cache-control": "max-age=60, stale-while-revalidate=-5" },
      { defaults: { staleWhileRevalidateMs: 1_000 } },
    );
    expect(t.swrUntil).toBe(T0 + 61 * S);
  });

  it.each(["must-revalidate", "proxy-revalidate", "no-cache"])(
    "%s zeroes both windows, grace included",
    (directive) => {
      const defaults = { staleWhileRevalidateMs: 5_000, staleIfErrorMs: 7_000 };
      const t = life(
        { "cache-control": `max-age=60, stale-while-revalidate=30, stale-if-error=60, ${directive}` },
        { defaults },
      );
      expect(t.mustRevalidate).toBe(true);
      expect(t.swrUntil).toBe(t.staleAt);
      expect(t.sieUntil).toBe(t.staleAt);
    },
  );

  it("treats s-maxage as proxy-revalidate (RFC 9111 §5.2.2.10) unless the origin grants a stale window", () => {
    const defaults = { staleWhileRevalidateMs: 5_000 };
    const bare = life({ "cache-control": "s-maxage=60" }, { defaults });
    expect(bare.mustRevalidate).toBe(true);
    expect(bare.swrUntil).toBe(T0 + 60 * S);
    const granted = life({ "cache-control": "s-maxage=60, stale-while-revalidate=30" }, { defaults });
    expect(granted.mustRevalidate).toBe(false);
    expect(granted.swrUntil).toBe(T0 + 95 * S);
  });

  it("under s-maxage the operator's grace lengthens only a window the origin named, never opens the other", () => {
    const defaults = { staleWhileRevalidateMs: 30_000, staleIfErrorMs: 60_000 };
    const sieOnly = life({ "cache-control": "s-maxage=1, stale-if-error=60" }, { defaults });
    expect(sieOnly.swrUntil).toBe(T0 + 1 * S);
    expect(sieOnly.sieUntil).toBe(T0 + 121 * S);
    const swrOnly = life({ "cache-control": "s-maxage=1, stale-while-revalidate=1" }, { defaults });
    expect(swrOnly.swrUntil).toBe(T0 + 32 * S);
    expect(swrOnly.sieUntil).toBe(T0 + 1 * S);
    // Without s-maxage the grace applies to both, as before.
    const plain = life({ "cache-control": "max-age=1, stale-if-error=60" }, { defaults });
    expect(plain.swrUntil).toBe(T0 + 31 * S);
  });
});

describe("RFC 9213 §2.2 an invalid CDN-Cache-Control is ignored entirely", () => {
  it.each(['max-age="10000"', "max-age=10000, &&&&&", "max-age =100", "max-age=1.5", "MaX-aGe=3600", ""])(
    "falls back to Cache-Control for %j",
    (cdn) => {
      expect(store({ "cdn-cache-control": cdn, "cache-control": "no-store" })).toEqual({
        storable: false,
        reason: "no-store",
      });
    },
  );

  it("ignores Expires while a valid CDN-Cache-Control governs", () => {
    const future = "Wed, 01 Jan 2025 13:00:00 GMT";
    expect(life({ "cdn-cache-control": "max-age=0", expires: future, date: HTTP_T0 }).staleAt).toBe(T0);
    expect(life({ "cdn-cache-control": "public", expires: future, date: HTTP_T0 }).staleAt).toBe(T0);
    expect(life({ "cdn-cache-control": "max-age=10, junk", "cache-control": "max-age=1" }).staleAt).toBe(T0 + 10 * S);
  });
});

describe("RFC 9111 §1.2.2 lifetimes are capped at 2^31 seconds", () => {
  it("caps an Expires in 2286 so every instant stays schedulable (DO alarms refuse dates after 2189)", () => {
    const t = life({ expires: "Sat, 20 Nov 2286 17:46:40 GMT", date: HTTP_T0 });
    expect(t.staleAt).toBeLessThan(T0 + MAX_LIFETIME_MS);
    expect(t.deleteAt).toBe(T0 + MAX_LIFETIME_MS);
    expect(new Date(t.deleteAt).getUTCFullYear()).toBeLessThan(2189);
  });

  it("caps the stale windows and the retained time too", () => {
    const big = String(2 ** 31);
    const t = life({ "cache-control": `max-age=${big}, stale-while-revalidate=${big}, stale-if-error=${big}` });
    expect(Math.max(t.staleAt, t.swrUntil, t.sieUntil)).toBeLessThan(t.deleteAt);
    expect(t.deleteAt).toBe(T0 + MAX_LIFETIME_MS);
  });
});
