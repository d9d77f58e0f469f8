// zod/mini (inside zod 4) instead of classic zod: the same validation for a fraction of the
// bundle, which every Worker isolate parses at start. Only the English messages are loaded.
import * as z from "zod/mini";
import en from "zod/v4/locales/en.js";
import { HerdlessError } from "./errors.ts";
import { DEFAULT_STRIPPED_REQUEST_HEADERS } from "./origin/poisoning-headers.ts";

z.config(en());

/** The longest delay a timer can take: Node and workerd fire longer ones at once (signed 32-bit ms). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The longest lifetime (TTL, stale window, retention) an entry may be given: one year. */
export const MAX_TTL_MS = 365 * 24 * 3600_000;
/** The largest in-process cache: 64 GiB, far beyond any heap a Node process is given. */
const MAX_CACHE_BYTES = 2 ** 36;

/** A duration in whole milliseconds; `max` is what the runtime can honour for this use. */
const ms = (what: string, min = 0, max = MAX_TIMER_MS) =>
  z
    .number({
      error: (issue) => (issue.code === "invalid_type" ? `${what} must be a number of milliseconds` : undefined),
    })
    .check(
      z.int({ error: `${what} must be a whole number of milliseconds` }),
      z.minimum(min, { error: `${what} must be at least ${min} ms` }),
      z.maximum(max, {
        error:
          max === MAX_TIMER_MS
            ? `${what} must be at most ${max} ms (about 24.8 days): a longer timer cannot be honoured`
            : `${what} must be at most ${max} ms (one year)`,
      }),
    );
/** A lifetime of stored entries (not a timer): up to a year. */
const ttl = (what: string) => ms(what, 0, MAX_TTL_MS);
/** A whole count or size between `min` and `max`. */
const count = (what: string, min: number, max: number) =>
  z.number().check(z.int(), z.minimum(min), z.maximum(max, { error: `${what} must be at most ${max}` }));

/**
 * Bodies up to this size are stored on every runtime (25 MiB): Durable Object storage and
 * Redis keep them in chunks below their per-value caps, the Cache API takes far larger objects.
 */
export const DEFAULT_MAX_ENTRY_BYTES = 25 * 1024 * 1024;
/** The largest `cache.maxEntryBytes` accepted: a flight keeps up to this many bytes in memory to store them. */
const MAX_ENTRY_BYTES_LIMIT = 128 * 1024 * 1024;

const keyOptions = z.strictObject({
  /** Query parameter names to drop from the key; `*` at the end matches a prefix (`utm_*`). */
  ignoreQuery: z._default(z.array(z.string().check(z.minLength(1))), ["utm_*", "fbclid", "gclid"]),
  /** Drop the whole query string from the key. */
  ignoreAllQuery: z._default(z.boolean(), false),
});

const routePolicy = z.strictObject({
  /** Pass requests straight to the origin; nothing is stored. */
  bypass: z.optional(z.boolean()),
  /** Freshness when the origin sends no explicit lifetime (no max-age, s-maxage, Expires). */
  defaultTtlMs: z.optional(ttl("defaultTtlMs")),
  /** Freshness regardless of what the origin says (still never stores private/no-store). */
  forceTtlMs: z.optional(ttl("forceTtlMs")),
  /** Extra stale-while-revalidate window on top of the origin's. */
  staleWhileRevalidateMs: z.optional(ttl("staleWhileRevalidateMs")),
  /** Extra stale-if-error window on top of the origin's. */
  staleIfErrorMs: z.optional(ttl("staleIfErrorMs")),
  /** Cache responses to requests carrying Authorization or Cookie (the origin must not personalize them). */
  cacheAuthorized: z.optional(z.boolean()),
  /**
   * Revalidate, through the key's coordinator, requests whose Cache-Control says `no-cache` or a
   * `max-age` the stored entry is older than (or `Pragma: no-cache`). Off by default: a reload
   * is answered from the cache, so a crowd pressing reload cannot reach the origin.
   */
  honorRequestNoCache: z.optional(z.boolean()),
  key: z.optional(z.partial(keyOptions)),
});

const route = z.extend(routePolicy, {
  /** Path pattern: exact `/about`, prefix `/static/*`, or any `*`. First match wins. */
  match: z.union([
    z.string().check(z.startsWith("/", { error: "match must start with / (for example /static/*)" })),
    z.literal("*"),
  ]),
});

export const configSchema = z
  .strictObject({
    origin: z.strictObject({
      url: z.url({
        protocol: /^https?$/,
        error: "origin.url must be an absolute http(s) URL such as http://127.0.0.1:8080",
      }),
      /** Abort an origin request (connect + full body) after this long. */
      timeoutMs: z._default(ms("origin.timeoutMs", 1), 10_000),
      /** Concurrent origin requests across the whole deployment, all keys together. */
      maxConcurrency: z._default(count("origin.maxConcurrency", 1, 100_000), 8),
      /** Cold misses waiting for an origin permit beyond this many get 503. */
      maxQueue: z._default(count("origin.maxQueue", 0, 1_000_000), 1_000),
      /** How long a cold miss waits for an origin permit before 503. */
      queueTimeoutMs: z._default(ms("origin.queueTimeoutMs"), 10_000),
      /** A streamed origin body (bypass, unsafe methods, pass) that sends nothing for this long is cut off. */
      streamIdleTimeoutMs: z._default(ms("origin.streamIdleTimeoutMs", 1), 30_000),
      /** A streamed origin body still running this long after its head is cut off; it holds an origin permit until then. */
      streamTimeoutMs: z._default(ms("origin.streamTimeoutMs", 1), 300_000),
      /** Cache 404 responses for this long (0 = do not). */
      notFoundTtlMs: z._default(ttl("origin.notFoundTtlMs"), 0),
      /**
       * Opt-in negative caching: serve a 5xx without explicit freshness to everyone for this
       * long when no stale copy exists. Off (0) by default: RFC 9111 gives such an error only
       * to the requests that waited on its fetch; the breaker and the backoff protect the origin.
       */
      errorTtlMs: z._default(ttl("origin.errorTtlMs"), 0),
      /** Host sent to the origin: its own (`origin`), the client's (`client`), or this name. */
      hostHeader: z._default(
        z.union([
          z.enum(["origin", "client"]),
          z.string().check(
            z.regex(/^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/, {
              error: 'origin.hostHeader must be "origin", "client" or a host name such as www.example.com',
            }),
          ),
        ]),
        "origin",
      ),
      /** Request headers never sent to the origin (override headers used for cache poisoning). */
      stripRequestHeaders: z._default(
        z.array(z.string().check(z.regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { error: "must be a header name" }))),
        [...DEFAULT_STRIPPED_REQUEST_HEADERS],
      ),
      /** Add X-Forwarded-For, X-Forwarded-Proto and Via to origin requests. */
      forwardedHeaders: z._default(z.boolean(), true),
    }),
    cache: z.prefault(
      z.strictObject({
        /** Cache API name (Workers) or store namespace (Redis). */
        name: z._default(z.string().check(z.minLength(1)), "herdless"),
        /** Memory budget of the in-process store (Node), in bytes. */
        maxBytes: z._default(count("cache.maxBytes", 1024, MAX_CACHE_BYTES), 256 * 1024 * 1024),
        /** Bodies larger than this are still shared by every waiting request, streamed, but not stored. */
        maxEntryBytes: z._default(count("cache.maxEntryBytes", 1, MAX_ENTRY_BYTES_LIMIT), DEFAULT_MAX_ENTRY_BYTES),
        /** How long past its last servable instant a stale entry is kept for revalidation and breaker-open serving. */
        retainStaleMs: z._default(ttl("cache.retainStaleMs"), 24 * 3600_000),
        /** Show the origin's Cache-Tag and Surrogate-Key headers to clients (herdless consumes them for purges). */
        exposeTagHeaders: z._default(z.boolean(), false),
      }),
      {},
    ),
    coordinator: z.prefault(
      z.strictObject({
        /** A lease on a key expires after this long if its holder dies. */
        lockLeaseMs: z._default(ms("coordinator.lockLeaseMs", 1), 15_000),
        /** How long an edge waits on the coordinator before falling back. */
        waitTimeoutMs: z._default(ms("coordinator.waitTimeoutMs", 1), 20_000),
        /**
         * Cloudflare: where to create the key coordinators, the guard and the purge registry
         * (a Durable Object location hint): near the origin, so a fill is one short hop.
         */
        locationHint: z.optional(
          z.enum(["wnam", "enam", "sam", "weur", "eeur", "apac", "apac-ne", "apac-se", "oc", "afr", "me"]),
        ),
      }),
      {},
    ),
    breaker: z.prefault(
      z.strictObject({
        /** Sick origin calls (timeouts, refused or reset connections, failureStatuses) in the window that open the breaker. */
        failureThreshold: z._default(count("breaker.failureThreshold", 1, 1_000_000), 5),
        /** ...and the share of the window's calls they must be. */
        failureRate: z._default(
          z
            .number()
            .check(
              z.minimum(0.01, { error: "breaker.failureRate must be between 0.01 and 1" }),
              z.maximum(1, { error: "breaker.failureRate must be between 0.01 and 1" }),
            ),
          0.5,
        ),
        /** ...and how many distinct keys they must come from: one broken URL never opens the breaker. */
        minFailingKeys: z._default(count("breaker.minFailingKeys", 1, 1_000), 3),
        /** The sliding window the breaker judges. */
        windowMs: z._default(ms("breaker.windowMs", 100), 10_000),
        /** Origin statuses that are signs of a sick origin (counted by the breaker); any other answer proves it is up. */
        failureStatuses: z._default(
          z.array(
            z
              .number()
              .check(
                z.int(),
                z.minimum(500, { error: "breaker.failureStatuses must list 5xx statuses" }),
                z.maximum(599, { error: "breaker.failureStatuses must list 5xx statuses" }),
              ),
          ),
          [502, 503, 504],
        ),
        probeIntervalMs: z._default(ms("breaker.probeIntervalMs", 1), 5_000),
        serveStaleWhileOpen: z._default(z.boolean(), true),
      }),
      {},
    ),
    fleet: z.prefault(
      z.strictObject({
        /**
         * Node fleet on Redis: while Redis is unreachable each process takes its share of
         * origin.maxConcurrency, for a fleet of the size it last saw in Redis but never fewer
         * processes than this (a process that never reached Redis assumes exactly this many).
         */
        minProcesses: z._default(count("fleet.minProcesses", 1, 10_000), 1),
      }),
      {},
    ),
    defaults: z.prefault(routePolicy, {}),
    routes: z._default(z.array(route), []),
    admin: z.prefault(
      z.strictObject({
        /** Bearer token for /__herdless/ (purge, stats, dashboard); unset disables the admin API. */
        token: z.optional(
          z
            .string()
            .check(
              z.minLength(16, { error: "admin.token must be at least 16 characters" }),
              z.maxLength(1024, { error: "admin.token must be at most 1024 characters" }),
            ),
        ),
        /** Edges re-read the purge list at least this often; a purge returns after it, when every edge honours it. */
        purgePropagationMs: z._default(ms("admin.purgePropagationMs", 10, 60_000), 1_000),
        /**
         * Workers: each isolate reports its counters to the deployment's stats object at most
         * this often (the last report waits under ctx.waitUntil, which lasts 30 s: hence the bound).
         */
        statsReportIntervalMs: z._default(ms("admin.statsReportIntervalMs", 1_000, 25_000), 10_000),
      }),
      {},
    ),
    log: z.prefault(
      z.strictObject({ level: z._default(z.enum(["debug", "info", "warn", "error", "silent"]), "info") }),
      {},
    ),
  })
  .check(
    z.refine((c) => c.coordinator.lockLeaseMs > c.origin.timeoutMs, {
      // A lease shorter than the origin timeout would cancel healthy slow fetches and let a second one start.
      error:
        "coordinator.lockLeaseMs must be greater than origin.timeoutMs, so a lease outlives the origin request it protects",
      path: ["coordinator", "lockLeaseMs"],
    }),
  );

/** Config as written by an operator (defaults may be omitted). */
export type ConfigInput = z.input<typeof configSchema>;
/** Config with every default applied. */
export type Config = z.output<typeof configSchema>;
export type RouteConfig = Config["routes"][number];
export type KeyOptions = z.output<typeof keyOptions>;

/** The policy in force for one request path: defaults overlaid by the first matching route. */
export interface RoutePolicy {
  match: string;
  bypass: boolean;
  defaultTtlMs: number | undefined;
  forceTtlMs: number | undefined;
  staleWhileRevalidateMs: number;
  staleIfErrorMs: number;
  cacheAuthorized: boolean;
  honorRequestNoCache: boolean;
  key: KeyOptions;
}

/**
 * Validates operator config; throws a CONFIG_INVALID error listing every bad field, its
 * value and the accepted form, with a "did you mean" for misspelled keys.
 *
 * @example
 * const config = parseConfig({ origin: { url: "http://127.0.0.1:8080", maxConcurrency: 4 } });
 */
export function parseConfig(input: unknown): Config {
  const result = configSchema.safeParse(input);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => describeIssue(issue, input));
  throw new HerdlessError("CONFIG_INVALID", `invalid herdless config:\n${lines.map((l) => `  - ${l}`).join("\n")}`);
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const path = issue.path.map(String).join(".") || "(root)";
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(issue.path);
    return issue.keys
      .map((key) => {
        const suggestion = closest(key, known);
        const where = path === "(root)" ? key : `${path}.${key}`;
        return `${where}: unknown option${suggestion ? ` (did you mean "${suggestion}"?)` : ""}; accepted: ${known.join(", ")}`;
      })
      .join("\n  - ");
  }
  const value = valueAt(input, issue.path);
  const shown = value === undefined ? "missing" : JSON.stringify(value);
  return `${path}: ${issue.message} (got ${shown})`;
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let node = input;
  for (const part of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}

function knownKeys(path: PropertyKey[]): string[] {
  let schema: z.core.$ZodType | undefined = configSchema;
  for (const part of path) {
    const def: z.core.$ZodTypeDef | undefined = unwrap(schema)?._zod.def;
    if (def?.type === "array") schema = (def as z.core.$ZodArrayDef).element;
    else if (def?.type === "object") schema = (def as z.core.$ZodObjectDef).shape[part as string];
  }
  const def = unwrap(schema)?._zod.def;
  return def?.type === "object" ? Object.keys((def as z.core.$ZodObjectDef).shape) : [];
}

/** The schema under defaults, optionals and pipes: the one whose shape an operator writes. */
export function unwrap(schema: z.core.$ZodType | undefined): z.core.$ZodType | undefined {
  let current = schema;
  for (;;) {
    const def = current?._zod.def as { innerType?: z.core.$ZodType; in?: z.core.$ZodType; type: string } | undefined;
    if (def?.innerType) current = def.innerType;
    else if (def?.type === "pipe" && def.in) current = def.in;
    else return current;
  }
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = levenshtein(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** The policy for `pathname`: the first matching route overlaid on `defaults`. */
export function routeFor(config: Config, pathname: string): RoutePolicy {
  const matched = config.routes.find((r) => pathMatches(r.match, pathname));
  const d = config.defaults;
  const r: Partial<RouteConfig> = matched ?? {};
  return {
    match: matched?.match ?? "*",
    bypass: r.bypass ?? d.bypass ?? false,
    defaultTtlMs: r.defaultTtlMs ?? d.defaultTtlMs,
    forceTtlMs: r.forceTtlMs ?? d.forceTtlMs,
    staleWhileRevalidateMs: r.staleWhileRevalidateMs ?? d.staleWhileRevalidateMs ?? 0,
    staleIfErrorMs: r.staleIfErrorMs ?? d.staleIfErrorMs ?? 0,
    cacheAuthorized: r.cacheAuthorized ?? d.cacheAuthorized ?? false,
    honorRequestNoCache: r.honorRequestNoCache ?? d.honorRequestNoCache ?? false,
    key: {
      ignoreQuery: r.key?.ignoreQuery ?? d.key?.ignoreQuery ?? ["utm_*", "fbclid", "gclid"],
      ignoreAllQuery: r.key?.ignoreAllQuery ?? d.key?.ignoreAllQuery ?? false,
    },
  };
}

export function pathMatches(pattern: string, pathname: string): boolean {
  if (pattern === "*") return true;
  if (pattern.endsWith("*")) return pathname.startsWith(pattern.slice(0, -1));
  return pathname === pattern;
}
