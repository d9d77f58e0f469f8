import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type * as v from "valibot";
import { configSchema, longestOriginTimeoutMs, parseConfig, routeFor } from "./config.ts";
import { breakerSettings } from "./guard/local-guard.ts";
import { isObject, unwrap } from "./config/messages.ts";
import { fillBudgetBytes } from "./store/fill-budget.ts";

const origin = { url: "http://127.0.0.1:8080" };

function messageOf(input: unknown): string {
  try {
    parseConfig(input);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error("config was accepted");
}

describe("config: every class of invalid input gets a message naming the field, the value and the fix", () => {
  it.each([
    ["missing required section", {}, "origin: Invalid input: expected object, received undefined (got missing)"],
    [
      "wrong URL scheme",
      { origin: { url: "ftp://x" } },
      'origin.url: origin.url must be an absolute http(s) URL such as http://127.0.0.1:8080 (got "ftp://x")',
    ],
    [
      "credentials in the origin's URL (never sent; not repeated in the message)",
      { origin: { url: "http://user:secret@127.0.0.1:8080" } },
      'origin.url: origin.url must not hold credentials (user:password@): they are never sent to the origin (got "http://…@127.0.0.1:8080")',
    ],
    [
      "a query in the origin's URL (each request's own replaces it)",
      { origin: { url: "http://127.0.0.1:8080/app?site=1" } },
      "origin.url: origin.url must not have a query or fragment: each origin request carries its client's query",
    ],
    [
      "wrong type",
      { origin: { ...origin, timeoutMs: "5s" } },
      'origin.timeoutMs: origin.timeoutMs must be a number of milliseconds (got "5s")',
    ],
    [
      "out of range",
      { origin: { ...origin, maxConcurrency: 0 } },
      "origin.maxConcurrency: origin.maxConcurrency must be at least 1 (got 0)",
    ],
    [
      "negative duration",
      { origin: { ...origin, timeoutMs: -1 } },
      "origin.timeoutMs: origin.timeoutMs must be at least 1 ms (got -1)",
    ],
    [
      "not an integer",
      { origin: { ...origin, maxQueue: 1.5 } },
      "origin.maxQueue: origin.maxQueue must be a whole number (got 1.5)",
    ],
    [
      "no request may wait at all",
      { origin: { ...origin, maxWaiting: 0 } },
      "origin.maxWaiting: origin.maxWaiting must be at least 1 (got 0)",
    ],
    [
      "a share of a waiting request",
      { origin: { ...origin, maxWaiting: 2.5 } },
      "origin.maxWaiting: origin.maxWaiting must be a whole number (got 2.5)",
    ],
    [
      "waiting requests as text",
      { origin: { ...origin, maxWaiting: "5000" } },
      'origin.maxWaiting: origin.maxWaiting must be a number (got "5000")',
    ],
    [
      "more waiting requests than any heap holds",
      { origin: { ...origin, maxWaiting: 1e9 } },
      "origin.maxWaiting: origin.maxWaiting must be at most 10000000 (got 1000000000)",
    ],
    [
      "misspelled key",
      { origin: { ...origin, maxConcurency: 4 } },
      'origin.maxConcurency: unknown option (did you mean "maxConcurrency"?); accepted: url, timeoutMs, maxConcurrency',
    ],
    ["unknown section", { origin, breker: {} }, 'breker: unknown option (did you mean "breaker"?)'],
    [
      "bad enum",
      { origin, log: { level: "loud" } },
      'log.level: Invalid option: expected one of "debug"|"info"|"warn"|"error"|"silent" (got "loud")',
    ],
    [
      "bad route inside the list",
      { origin, routes: [{ match: "static/*" }] },
      'routes.0.match: match must start with / (for example /static/*) (got "static/*")',
    ],
    [
      "a glob in a route (would silently never match)",
      { origin, routes: [{ match: "/blog/*/edit" }] },
      'routes.0.match: match takes * only at its end (no globs or regular expressions): exact /about, prefix /static/* or everything * (got "/blog/*/edit")',
    ],
    [
      "a route in a form no request path takes (would silently never match)",
      { origin, routes: [{ match: "/Über/*", bypass: true }] },
      'routes.0.match: match is matched against the path as a URL parser writes it, which never reads "/Über/*": write "/%C3%9Cber/*" (percent-encoded, dot segments resolved, no query) (got "/Über/*")',
    ],
    [
      "a route with a query",
      { origin, routes: [{ match: "/search?q=x" }] },
      'routes.0.match: match is matched against the path as a URL parser writes it, which never reads "/search?q=x": write "/search" (percent-encoded, dot segments resolved, no query) (got "/search?q=x")',
    ],
    [
      "a route without match",
      { origin, routes: [{ bypass: true }] },
      "routes.0.match: match is required: exact /about, prefix /static/* or everything * (got missing)",
    ],
    [
      "unknown route option",
      { origin, routes: [{ match: "/a", ttl: 5 }] },
      "routes.0.ttl: unknown option; accepted: bypass, defaultTtlMs",
    ],
    [
      "inconsistent values",
      { origin: { ...origin, timeoutMs: 20_000 } },
      "coordinator.lockLeaseMs: coordinator.lockLeaseMs must be greater than origin.timeoutMs, so a lease outlives the origin request it protects (got its default)",
    ],
    [
      "waiters that give up before the fetch they wait on may end (503s, then a second origin request)",
      { origin: { ...origin, timeoutMs: 5_000 }, coordinator: { lockLeaseMs: 6_000, waitTimeoutMs: 1_000 } },
      "coordinator.waitTimeoutMs: coordinator.waitTimeoutMs must be greater than origin.timeoutMs, so a request waiting on another's fetch outlives it: raise waitTimeoutMs or lower origin.timeoutMs (got 1000)",
    ],
    [
      "a slow origin allowed for with the lease but not the wait",
      { origin: { ...origin, timeoutMs: 30_000 }, coordinator: { lockLeaseMs: 40_000 } },
      "coordinator.waitTimeoutMs: coordinator.waitTimeoutMs must be greater than origin.timeoutMs, so a request waiting on another's fetch outlives it: raise waitTimeoutMs or lower origin.timeoutMs (got its default)",
    ],
    [
      "timer beyond what Node and workerd can honour",
      { origin: { ...origin, timeoutMs: 3_000_000_000 } },
      "origin.timeoutMs: origin.timeoutMs must be at most 2147483647 ms (about 24.8 days): a longer timer cannot be honoured (got 3000000000)",
    ],
    [
      "lifetime beyond a year",
      { origin, defaults: { forceTtlMs: 400 * 24 * 3600_000 } },
      "defaults.forceTtlMs: forceTtlMs must be at most 31536000000 ms (one year) (got 34560000000)",
    ],
    [
      "size beyond what a process can hold",
      { origin, cache: { maxBytes: 2 ** 40 } },
      "cache.maxBytes: cache.maxBytes must be at most 68719476736 (got 1099511627776)",
    ],
    [
      "fill budget below what one body past its keep is read ahead with",
      { origin, cache: { fillBudgetBytes: 1000 } },
      "cache.fillBudgetBytes: cache.fillBudgetBytes must be at least 1048576 (got 1000)",
    ],
    [
      "Redis bound below one entry: each large body would be evicted as soon as it is stored",
      { origin, cache: { sharedMaxBytes: 16 * 1024 * 1024 } },
      "cache.sharedMaxBytes: cache.sharedMaxBytes must be at least cache.maxEntryBytes, so the largest entry stored fits in Redis",
    ],
    [
      "Redis bound beyond any Redis host",
      { origin, cache: { sharedMaxBytes: 2 ** 41 } },
      "cache.sharedMaxBytes: cache.sharedMaxBytes must be at most 1099511627776 (got 2199023255552)",
    ],
    [
      "Redis bound not a whole number",
      { origin, cache: { sharedMaxBytes: "1gb" } },
      'cache.sharedMaxBytes: cache.sharedMaxBytes must be a number (got "1gb")',
    ],
    [
      "count beyond what the guard can track",
      { origin: { ...origin, maxQueue: 1e9 } },
      "origin.maxQueue: origin.maxQueue must be at most 1000000 (got 1000000000)",
    ],
    [
      "backoff cap below its base",
      { origin, breaker: { backoffBaseMs: 5_000, backoffMaxMs: 1_000 } },
      "breaker.backoffMaxMs: breaker.backoffMaxMs must be at least breaker.backoffBaseMs",
    ],
    [
      "refresh-ahead share out of range",
      { origin, routes: [{ match: "/a", refreshAhead: 0.9 }] },
      "routes.0.refreshAhead: refreshAhead must be between 0 and 0.5 (0.1 = the last 10 % of the lifetime) (got 0.9)",
    ],
    [
      "a route's origin timeout as text",
      { origin, routes: [{ match: "/poll/*", bypass: true, timeoutMs: "30s" }] },
      'routes.0.timeoutMs: timeoutMs must be a number of milliseconds (got "30s")',
    ],
    [
      "a route's origin timeout of nothing",
      { origin, routes: [{ match: "/poll/*", bypass: true, timeoutMs: 0 }] },
      "routes.0.timeoutMs: timeoutMs must be at least 1 ms (got 0)",
    ],
    [
      "a route's origin timeout in fractions of a millisecond",
      { origin, defaults: { timeoutMs: 2.5 } },
      "defaults.timeoutMs: timeoutMs must be a whole number of milliseconds (got 2.5)",
    ],
    [
      "a route's origin timeout beyond what a timer can honour",
      { origin, routes: [{ match: "/poll/*", bypass: true, timeoutMs: 3_000_000_000 }] },
      "routes.0.timeoutMs: timeoutMs must be at most 2147483647 ms (about 24.8 days): a longer timer cannot be honoured (got 3000000000)",
    ],
    [
      "a route that caches waiting on its origin past the key's lease (its fill cancelled, a second one started)",
      { origin, routes: [{ match: "/a" }, { match: "/reports/*", timeoutMs: 30_000 }] },
      "routes.1.timeoutMs: timeoutMs must be less than coordinator.lockLeaseMs (15000) and coordinator.waitTimeoutMs (20000) on a route that caches: its fill holds the key's lease while requests for the key wait on it; raise both, or make the route bypass: true (got 30000)",
    ],
    [
      "a route that caches, lease raised but not the wait",
      { origin, routes: [{ match: "/reports/*", timeoutMs: 30_000 }], coordinator: { lockLeaseMs: 40_000 } },
      "routes.0.timeoutMs: timeoutMs must be less than coordinator.lockLeaseMs (40000) and coordinator.waitTimeoutMs (20000)",
    ],
    [
      "defaults that cache with a timeout past the lease",
      { origin, defaults: { timeoutMs: 15_000 } },
      "defaults.timeoutMs: timeoutMs must be less than coordinator.lockLeaseMs (15000)",
    ],
    [
      "a route that caches and takes the timeout of bypassing defaults",
      { origin, defaults: { bypass: true, timeoutMs: 60_000 }, routes: [{ match: "/static/*", bypass: false }] },
      "defaults.timeoutMs: timeoutMs must be less than coordinator.lockLeaseMs (15000)",
    ],
    [
      "short admin token (described, never repeated)",
      { origin, admin: { token: "short" } },
      "admin.token: admin.token must be at least 16 characters (got 5 characters)",
    ],
    [
      "non-ASCII admin token (Node reads header bytes as latin1: a UTF-8 token never matches)",
      { origin, admin: { token: "pässwörd-pässwörd-1" } },
      "admin.token: admin.token must be visible ASCII only (letters, digits, punctuation; no spaces, control characters or accented letters), what an Authorization header carries as written (got 19 characters)",
    ],
    [
      "admin token with surrounding spaces (parsers trim them off the header)",
      { origin, admin: { token: " abcdefghijklmnopqrst " } },
      "admin.token: admin.token must be visible ASCII only (letters, digits, punctuation; no spaces, control characters or accented letters), what an Authorization header carries as written (got 22 characters)",
    ],
    [
      "admin token with a control character",
      { origin, admin: { token: "abcdefghijklmnop\n" } },
      "admin.token: admin.token must be visible ASCII only (letters, digits, punctuation; no spaces, control characters or accented letters), what an Authorization header carries as written (got 17 characters)",
    ],
    [
      "no client connections at all (server.maxConnections)",
      { origin, server: { maxConnections: 0 } },
      "server.maxConnections: server.maxConnections must be at least 1 (got 0)",
    ],
    [
      "client connections given as text",
      { origin, server: { maxConnections: "20k" } },
      'server.maxConnections: server.maxConnections must be a number (got "20k")',
    ],
    [
      "a fraction of a connection",
      { origin, server: { maxConnections: 100.5 } },
      "server.maxConnections: server.maxConnections must be a whole number (got 100.5)",
    ],
  ])("%s", (_, input, message) => {
    const text = messageOf(input);
    expect(text).toContain("invalid herdless config");
    expect(text).toContain(message);
  });

  it("lists every problem at once", () => {
    const text = messageOf({ origin: { url: "nope", timeoutMs: -1 }, log: { level: 3 } });
    expect(text.split("\n  - ")).toHaveLength(4);
  });
});

describe("config: defaults and routes", () => {
  it("fills every default", () => {
    const config = parseConfig({ origin });
    expect(config.origin).toMatchObject({ timeoutMs: 10_000, maxConcurrency: 8, queueTimeoutMs: 10_000 });
    expect(config.breaker).toMatchObject({ failureThreshold: 5, probeIntervalMs: 5_000, serveStaleWhileOpen: true });
    expect(config.breaker.failureStatuses).toEqual([502, 503, 504]);
    expect(config.breaker).toMatchObject({ backoffBaseMs: 1_000, backoffMaxMs: 60_000 });
    // The defaults keep the rules across fields: lease and wait both outlive an origin request.
    expect(config.coordinator).toMatchObject({ lockLeaseMs: 15_000, waitTimeoutMs: 20_000 });
    expect(routeFor(config, "/").refreshAhead).toBe(0);
  });

  it("gives each route its own origin timeout, else the defaults', else origin.timeoutMs; a bypass route's may pass the lease", () => {
    const config = parseConfig({
      origin,
      defaults: { timeoutMs: 12_000 },
      routes: [
        { match: "/poll/*", bypass: true, timeoutMs: 120_000 },
        { match: "/quick/*", timeoutMs: 2_000 },
        { match: "/static/*" },
      ],
    });
    expect(routeFor(config, "/poll/chat").timeoutMs).toBe(120_000);
    expect(routeFor(config, "/quick/x").timeoutMs).toBe(2_000);
    expect(routeFor(config, "/static/x").timeoutMs).toBe(12_000);
    expect(routeFor(config, "/other").timeoutMs).toBe(12_000);
    expect(routeFor(parseConfig({ origin }), "/").timeoutMs).toBe(10_000);
    // The breaker's half-open probe may be any route's call: it outlives the longest of them.
    expect(longestOriginTimeoutMs(config)).toBe(120_000);
    expect(breakerSettings(config).probeTimeoutMs).toBe(120_000);
    expect(breakerSettings(parseConfig({ origin })).probeTimeoutMs).toBe(10_000);
  });

  it("derives the fill budget from cache.maxBytes (a quarter, at least 1 MiB) unless it is set", () => {
    const MiB = 2 ** 20;
    const budget = (cache: object) => fillBudgetBytes(parseConfig({ origin, cache }));
    // The documented Node bound: 1.5 × maxBytes + 100 MiB holds the cache, its heap headroom and this quarter.
    expect(budget({})).toBe(64 * MiB);
    expect(budget({ maxBytes: 64 * MiB })).toBe(16 * MiB);
    expect(budget({ maxBytes: 2 * MiB })).toBe(MiB);
    expect(budget({ maxBytes: 64 * MiB, fillBudgetBytes: 40 * MiB })).toBe(40 * MiB);
  });

  it("takes the first matching route over the defaults", () => {
    const config = parseConfig({
      origin,
      defaults: { defaultTtlMs: 1_000 },
      routes: [
        { match: "/static/*", forceTtlMs: 60_000 },
        { match: "/static/x", bypass: true },
      ],
    });
    expect(routeFor(config, "/static/x")).toMatchObject({
      match: "/static/*",
      forceTtlMs: 60_000,
      defaultTtlMs: 1_000,
      bypass: false,
    });
    expect(routeFor(config, "/other")).toMatchObject({ match: "*", defaultTtlMs: 1_000 });
  });
  it("keys a route by defaults.key for each key field the route leaves unset", () => {
    const config = parseConfig({
      origin,
      defaults: { key: { ignoreAllQuery: true, ignoreQuery: ["utm_*", "ref"] } },
      routes: [
        { match: "/x/*", key: { ignoreQuery: ["utm_*"] } },
        { match: "/y/*", key: { ignoreAllQuery: false } },
        { match: "/z/*", forceTtlMs: 1_000 },
      ],
    });
    expect(routeFor(config, "/x/a").key).toEqual({ ignoreQuery: ["utm_*"], ignoreAllQuery: true });
    expect(routeFor(config, "/y/a").key).toEqual({ ignoreQuery: ["utm_*", "ref"], ignoreAllQuery: false });
    expect(routeFor(config, "/z/a").key).toEqual({ ignoreQuery: ["utm_*", "ref"], ignoreAllQuery: true });
    expect(routeFor(parseConfig({ origin }), "/").key).toEqual({
      ignoreQuery: ["utm_*", "fbclid", "gclid"],
      ignoreAllQuery: false,
    });
  });
});

describe("docs/configuration.md", () => {
  it("documents every option of the schema", () => {
    const doc = readFileSync(new URL("../../docs/configuration.md", import.meta.url), "utf8");
    const missing = optionPaths(configSchema).filter((path) => !doc.includes(`\`${path}\``));
    expect(missing).toEqual([]);
  });
});

/** Every leaf option as a dotted path (`routes[].match`, `origin.timeoutMs`). */
function optionPaths(schema: v.GenericSchema | undefined, prefix = ""): string[] {
  const inner = unwrap(schema);
  if (isObject(inner))
    return Object.entries(inner.entries).flatMap(([key, child]) =>
      optionPaths(child, prefix ? `${prefix}.${key}` : key),
    );
  if (inner?.type === "array") {
    const item = (inner as v.ArraySchema<v.GenericSchema, undefined>).item;
    if (isObject(unwrap(item))) return optionPaths(item, `${prefix}[]`);
  }
  return [prefix];
}
