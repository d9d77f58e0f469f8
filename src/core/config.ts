import { z } from "zod";
import { HerdlessError } from "./errors.ts";

const ms = (what: string, min = 0) =>
  z
    .number({
      error: (issue) => (issue.code === "invalid_type" ? `${what} must be a number of milliseconds` : undefined),
    })
    .int({ error: `${what} must be a whole number of milliseconds` })
    .min(min, { error: `${what} must be at least ${min} ms` });

const keyOptions = z.strictObject({
  /** Query parameter names to drop from the key; `*` at the end matches a prefix (`utm_*`). */
  ignoreQuery: z.array(z.string().min(1)).default(["utm_*", "fbclid", "gclid"]),
  /** Drop the whole query string from the key. */
  ignoreAllQuery: z.boolean().default(false),
});

const routePolicy = z.strictObject({
  /** Pass requests straight to the origin; nothing is stored. */
  bypass: z.boolean().optional(),
  /** Freshness when the origin sends no explicit lifetime (no max-age, s-maxage, Expires). */
  defaultTtlMs: ms("defaultTtlMs").optional(),
  /** Freshness regardless of what the origin says (still never stores private/no-store). */
  forceTtlMs: ms("forceTtlMs").optional(),
  /** Extra stale-while-revalidate window on top of the origin's. */
  staleWhileRevalidateMs: ms("staleWhileRevalidateMs").optional(),
  /** Extra stale-if-error window on top of the origin's. */
  staleIfErrorMs: ms("staleIfErrorMs").optional(),
  /** Cache responses to requests carrying Authorization or Cookie (the origin must not personalize them). */
  cacheAuthorized: z.boolean().optional(),
  key: keyOptions.partial().optional(),
});

const route = routePolicy.extend({
  /** Path pattern: exact `/about`, prefix `/static/*`, or any `*`. First match wins. */
  match: z.string().startsWith("/", { error: "match must start with / (for example /static/*)" }).or(z.literal("*")),
});

export const configSchema = z
  .strictObject({
    origin: z.strictObject({
      url: z.url({
        protocol: /^https?$/,
        error: "origin.url must be an absolute http(s) URL such as http://127.0.0.1:8080",
      }),
      /** Abort an origin request (connect + full body) after this long. */
      timeoutMs: ms("origin.timeoutMs", 1).default(10_000),
      /** Concurrent origin requests across the whole deployment, all keys together. */
      maxConcurrency: z.number().int().min(1).default(8),
      /** Cold misses waiting for an origin permit beyond this many get 503. */
      maxQueue: z.number().int().min(0).default(1_000),
      /** How long a cold miss waits for an origin permit before 503. */
      queueTimeoutMs: ms("origin.queueTimeoutMs").default(10_000),
      /** Cache 404 responses for this long (0 = do not). */
      notFoundTtlMs: ms("origin.notFoundTtlMs").default(0),
      /** Cache 5xx and failed fetches for this long when no stale copy exists (0 = do not). */
      errorTtlMs: ms("origin.errorTtlMs").default(2_000),
    }),
    cache: z
      .strictObject({
        /** Cache API name (Workers) or store namespace (Redis). */
        name: z.string().min(1).default("herdless"),
        /** Memory budget of the in-process store (Node), in bytes. */
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(256 * 1024 * 1024),
        /** Bodies larger than this stream through and are not stored (below the 2 MB Durable Object value cap). */
        maxEntryBytes: z.number().int().min(1).max(2_000_000).default(1_900_000),
        /** How long past its last servable instant a stale entry is kept for revalidation and breaker-open serving. */
        retainStaleMs: ms("cache.retainStaleMs").default(24 * 3600_000),
      })
      .prefault({}),
    coordinator: z
      .strictObject({
        /** A lease on a key expires after this long if its holder dies. */
        lockLeaseMs: ms("coordinator.lockLeaseMs", 1).default(15_000),
        /** How long an edge waits on the coordinator before falling back. */
        waitTimeoutMs: ms("coordinator.waitTimeoutMs", 1).default(20_000),
      })
      .prefault({}),
    breaker: z
      .strictObject({
        failureThreshold: z.number().int().min(1).default(5),
        probeIntervalMs: ms("breaker.probeIntervalMs", 1).default(5_000),
        serveStaleWhileOpen: z.boolean().default(true),
      })
      .prefault({}),
    defaults: routePolicy.prefault({}),
    routes: z.array(route).default([]),
    admin: z
      .strictObject({
        /** Bearer token for /__herdless/ (purge, stats, dashboard); unset disables the admin API. */
        token: z.string().min(16, { error: "admin.token must be at least 16 characters" }).optional(),
        /** Edges re-read the purge list at least this often; a purge returns after it, when every edge honours it. */
        purgePropagationMs: ms("admin.purgePropagationMs", 10).max(60_000).default(1_000),
      })
      .prefault({}),
    log: z.strictObject({ level: z.enum(["debug", "info", "warn", "error", "silent"]).default("info") }).prefault({}),
  })
  .refine((c) => c.coordinator.lockLeaseMs > c.origin.timeoutMs, {
    // A lease shorter than the origin timeout would cancel healthy slow fetches and let a second one start.
    error:
      "coordinator.lockLeaseMs must be greater than origin.timeoutMs, so a lease outlives the origin request it protects",
    path: ["coordinator", "lockLeaseMs"],
  });

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
  let schema: z.core.$ZodType = configSchema;
  for (const part of path) {
    schema = unwrap(schema);
    if (typeof part === "number" && schema instanceof z.ZodArray) schema = schema.element as z.core.$ZodType;
    else if (schema instanceof z.ZodObject) schema = schema.shape[part as string] as z.core.$ZodType;
  }
  schema = unwrap(schema);
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
}

function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let current = schema;
  for (;;) {
    const def = current._zod.def as { innerType?: z.core.$ZodType; in?: z.core.$ZodType };
    if (def.innerType) current = def.innerType;
    else if (def.in && current instanceof z.ZodPipe) current = def.in;
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
