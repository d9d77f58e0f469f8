// valibot for the bundle a Worker isolate parses at start (config/checks.ts says how much).
import * as v from "valibot";
import { HerdlessError } from "./errors.ts";
import { pathReadings } from "./http/path-readings.ts";
import { describeIssue } from "./config/messages.ts";
import { DEFAULT_IGNORED_QUERY, keyOptions, route, routePolicy } from "./config/routes.ts";
import { cacheSection } from "./config/cache-section.ts";
import { abortive, array, pathTo, strictObject } from "./config/checks.ts";
import {
  adminSection,
  breakerSection,
  coordinatorSection,
  fleetSection,
  logSection,
  originSection,
  serverSection,
} from "./config/sections.ts";

const sections = strictObject({
  origin: originSection,
  cache: cacheSection,
  coordinator: coordinatorSection,
  breaker: breakerSection,
  fleet: fleetSection,
  server: serverSection,
  defaults: v.optional(routePolicy, {}),
  routes: v.optional(array(route), []),
  admin: adminSection,
  log: logSection,
});

/**
 * The operator's config, one section per concern (config/sections.ts, config/cache-section.ts, config/routes.ts),
 * checked as a whole where sections depend on each other.
 */
export const configSchema = v.pipe(
  sections,
  v.forward(
    // A lease shorter than the origin timeout would cancel healthy slow fetches and let a second one start.
    v.check(
      (c) => c.coordinator.lockLeaseMs > c.origin.timeoutMs,
      "coordinator.lockLeaseMs must be greater than origin.timeoutMs, so a lease outlives the origin request it protects",
    ),
    ["coordinator", "lockLeaseMs"],
  ),
  v.forward(
    // Waiters that give up before a healthy slow fill can finish get 503s, and the next one asks the origin again.
    v.check(
      (c) => c.coordinator.waitTimeoutMs > c.origin.timeoutMs,
      "coordinator.waitTimeoutMs must be greater than origin.timeoutMs, so a request waiting on another's fetch outlives it: raise waitTimeoutMs or lower origin.timeoutMs",
    ),
    ["coordinator", "waitTimeoutMs"],
  ),
  // A route's broken timeout leaves the two rules after it unchecked (they are told once it is fixed).
  abortive(
    v.rawCheck<v.InferOutput<typeof sections>>(({ dataset, addIssue }) => {
      if (!dataset.typed) return;
      for (const { path, message } of routeTimeoutIssues(dataset.value))
        addIssue({ message, path: pathTo(dataset.value, path) });
    }),
  ),
  v.forward(
    // A bound below one entry would evict each large body as soon as it is stored.
    v.check(
      (c) => (c.cache.sharedMaxBytes ?? Infinity) >= c.cache.maxEntryBytes,
      "cache.sharedMaxBytes must be at least cache.maxEntryBytes, so the largest entry stored fits in Redis",
    ),
    ["cache", "sharedMaxBytes"],
  ),
  v.forward(
    v.check(
      (c) => c.breaker.backoffMaxMs >= c.breaker.backoffBaseMs,
      "breaker.backoffMaxMs must be at least breaker.backoffBaseMs (the cap of a backoff that starts there)",
    ),
    ["breaker", "backoffMaxMs"],
  ),
);

/** Config as written by an operator (defaults may be omitted). */
export type ConfigInput = v.InferInput<typeof configSchema>;
/** Config with every default applied. */
export type Config = v.InferOutput<typeof configSchema>;
export type RouteConfig = Config["routes"][number];
export type KeyOptions = Required<v.InferOutput<typeof keyOptions>>;

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
  /** Share of the freshness lifetime, at its end, in which a request renews the entry in the background; 0 = off. */
  refreshAhead: number;
  key: KeyOptions;
  /** The deadline of every origin call for the route (its head; see docs/configuration.md `origin.timeoutMs`). */
  timeoutMs: number;
}

/**
 * Validates operator config; throws a CONFIG_INVALID error listing every bad field, its
 * value and the accepted form, with a "did you mean" for misspelled keys.
 *
 * @example
 * const config = parseConfig({ origin: { url: "http://127.0.0.1:8080", maxConcurrency: 4 } });
 */
export function parseConfig(input: unknown): Config {
  const result = v.safeParse(configSchema, input);
  if (result.success) return result.output;
  const lines = result.issues.map((issue) => describeIssue(issue, input, configSchema));
  throw new HerdlessError("CONFIG_INVALID", `invalid herdless config:\n${lines.map((l) => `  - ${l}`).join("\n")}`);
}

/**
 * The policy for `pathname`: the first matching route overlaid on `defaults`. The route is
 * matched on the path as herdless keys and forwards it, and on every other reading an origin
 * server may make of it (`pathReadings`: `%2F` decoded, `;` parameters dropped, `\\` as `/`,
 * without case …): the request bypasses the cache when any reading's route does, and caches
 * requests with credentials only when every reading's route does. `/static/..%2faccount`
 * on a `cacheAuthorized` `/static/*` route is the origin's `/account` to nginx, and the
 * victim's account page was stored for whoever asked next (web cache deception); `/API/x`
 * sidestepped an `/api/*` bypass on a case-insensitive origin.
 */
export function routeFor(config: Config, pathname: string): RoutePolicy {
  const matched = matchedRoute(config, pathname, false);
  if (!routesDiffer(config)) return overlaid(config, matched);
  const memo = policies(config);
  let policy = memo.get(pathname);
  if (policy) return policy;
  policy = overlaid(config, matched);
  const readings = pathReadings(pathname);
  // A long path an origin could read as another route's is not read every way: it is relayed.
  if (!readings) policy.bypass = true;
  for (const reading of readings ?? []) {
    const other = matchedRoute(config, reading.path, reading.folded);
    if (other === matched) continue;
    const { bypass, cacheAuthorized } = overlaid(config, other);
    policy.bypass ||= bypass;
    policy.cacheAuthorized &&= cacheAuthorized;
  }
  if (memo.size >= POLICY_MEMO_LIMIT) memo.clear();
  // A copy of its own: a URL's pathname is a slice of its href, which V8 would keep whole (16 KiB).
  if (pathname.length <= POLICY_MEMO_MAX_CHARS) memo.set([...pathname].join(""), policy);
  return policy;
}

/**
 * The last policies worked out from every reading of a path, per config: a request asks for
 * its route several times (engine, coordinator, settling), and each reading costs a pass over
 * the path. Bounded in count and in each path's length.
 */
const memos = new WeakMap<Config, Map<string, RoutePolicy>>();
const POLICY_MEMO_LIMIT = 256;
const POLICY_MEMO_MAX_CHARS = 2_048;

function policies(config: Config): Map<string, RoutePolicy> {
  let memo = memos.get(config);
  if (!memo) memos.set(config, (memo = new Map()));
  return memo;
}

function matchedRoute(config: Config, pathname: string, folded: boolean): RouteConfig | undefined {
  return config.routes.find((r) => pathMatches(folded ? r.match.toLowerCase() : r.match, pathname, folded));
}

/** Whether some route's `bypass` or `cacheAuthorized` differs from another's (or the defaults'): only then does a reading matter. */
function routesDiffer(config: Config): boolean {
  let differ = differing.get(config);
  if (differ === undefined) {
    const d = overlaid(config, undefined);
    differ = config.routes.some((r) => {
      const p = overlaid(config, r);
      return p.bypass !== d.bypass || p.cacheAuthorized !== d.cacheAuthorized;
    });
    differing.set(config, differ);
  }
  return differ;
}

/** {@link routesDiffer} per config, worked out once. */
const differing = new WeakMap<Config, boolean>();

/**
 * The policy of a path no route matches: `defaults` with every value it leaves out filled in
 * (what `check-config` prints as `defaults`, so the operator sees the TTLs and key options in force).
 */
export function defaultPolicy(config: Config): Omit<RoutePolicy, "match"> {
  const { match: _match, ...policy } = overlaid(config, undefined);
  return policy;
}

function overlaid(config: Config, matched: RouteConfig | undefined): RoutePolicy {
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
    refreshAhead: r.refreshAhead ?? d.refreshAhead ?? 0,
    key: {
      ignoreQuery: r.key?.ignoreQuery ?? d.key?.ignoreQuery ?? [...DEFAULT_IGNORED_QUERY],
      ignoreAllQuery: r.key?.ignoreAllQuery ?? d.key?.ignoreAllQuery ?? false,
    },
    timeoutMs: r.timeoutMs ?? d.timeoutMs ?? config.origin.timeoutMs,
  };
}

/**
 * The longest an origin call may wait for its answer, on any route: what must outlive every
 * call (the breaker's half-open probe, a fleet's count of the calls still running).
 *
 * @example
 * const probeTimeoutMs = longestOriginTimeoutMs(config); // 30000 with a route { timeoutMs: 30000 }
 */
export function longestOriginTimeoutMs(config: Config): number {
  const own = [config.defaults.timeoutMs, ...config.routes.map((r) => r.timeoutMs)];
  return Math.max(config.origin.timeoutMs, ...own.filter((t): t is number => t !== undefined));
}

/**
 * A route's own timeout (or the defaults') on a route that caches must end before the key's
 * lease does (the fill holds it) and before the requests collapsed onto the fill stop waiting:
 * the rule `origin.timeoutMs` keeps, for each timeout set on a route. A bypass route fills
 * nothing, so its timeout may pass both (a long poll).
 */
function routeTimeoutIssues(config: Config): { message: string; path: (string | number)[] }[] {
  const { lockLeaseMs, waitTimeoutMs } = config.coordinator;
  const message = `timeoutMs must be less than coordinator.lockLeaseMs (${lockLeaseMs}) and coordinator.waitTimeoutMs (${waitTimeoutMs}) on a route that caches: its fill holds the key's lease while requests for the key wait on it; raise both, or make the route bypass: true`;
  const paths = new Map<string, (string | number)[]>();
  for (const route of [undefined, ...config.routes]) {
    const policy = overlaid(config, route);
    if (policy.bypass || policy.timeoutMs < Math.min(lockLeaseMs, waitTimeoutMs)) continue;
    // Named where it was set: the route's own, else the defaults' (origin.timeoutMs has its own rule).
    const i = route ? config.routes.indexOf(route) : -1;
    const path = route?.timeoutMs !== undefined ? ["routes", i, "timeoutMs"] : ["defaults", "timeoutMs"];
    if (route?.timeoutMs !== undefined || config.defaults.timeoutMs !== undefined) paths.set(path.join("."), path);
  }
  return [...paths.values()].map((path) => ({ path, message }));
}

export function pathMatches(pattern: string, pathname: string, folded = false): boolean {
  if (pattern === "*") return true;
  const path = folded ? pathname.toLowerCase() : pathname;
  if (pattern.endsWith("*")) return path.startsWith(pattern.slice(0, -1));
  return path === pattern;
}
