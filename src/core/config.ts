import * as z from "zod/mini";
import { HerdlessError } from "./errors.ts";
import { describeIssue } from "./config/messages.ts";
import { DEFAULT_IGNORED_QUERY, keyOptions, route, routePolicy } from "./config/routes.ts";
import {
  adminSection,
  breakerSection,
  cacheSection,
  coordinatorSection,
  fleetSection,
  logSection,
  originSection,
} from "./config/sections.ts";

/**
 * The operator's config, one section per concern (config/sections.ts, config/routes.ts),
 * checked as a whole where sections depend on each other.
 */
export const configSchema = z
  .strictObject({
    origin: originSection,
    cache: cacheSection,
    coordinator: coordinatorSection,
    breaker: breakerSection,
    fleet: fleetSection,
    defaults: z.prefault(routePolicy, {}),
    routes: z._default(z.array(route), []),
    admin: adminSection,
    log: logSection,
  })
  .check(
    z.refine((c) => c.coordinator.lockLeaseMs > c.origin.timeoutMs, {
      // A lease shorter than the origin timeout would cancel healthy slow fetches and let a second one start.
      error:
        "coordinator.lockLeaseMs must be greater than origin.timeoutMs, so a lease outlives the origin request it protects",
      path: ["coordinator", "lockLeaseMs"],
    }),
    z.refine((c) => c.breaker.backoffMaxMs >= c.breaker.backoffBaseMs, {
      error: "breaker.backoffMaxMs must be at least breaker.backoffBaseMs (the cap of a backoff that starts there)",
      path: ["breaker", "backoffMaxMs"],
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
  /** Share of the freshness lifetime, at its end, in which a request renews the entry in the background; 0 = off. */
  refreshAhead: number;
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
  const lines = result.error.issues.map((issue) => describeIssue(issue, input, configSchema));
  throw new HerdlessError("CONFIG_INVALID", `invalid herdless config:\n${lines.map((l) => `  - ${l}`).join("\n")}`);
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
    refreshAhead: r.refreshAhead ?? d.refreshAhead ?? 0,
    key: {
      ignoreQuery: r.key?.ignoreQuery ?? d.key?.ignoreQuery ?? [...DEFAULT_IGNORED_QUERY],
      ignoreAllQuery: r.key?.ignoreAllQuery ?? d.key?.ignoreAllQuery ?? false,
    },
  };
}

export function pathMatches(pattern: string, pathname: string): boolean {
  if (pattern === "*") return true;
  if (pattern.endsWith("*")) return pathname.startsWith(pattern.slice(0, -1));
  return pathname === pattern;
}
