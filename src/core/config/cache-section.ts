import * as v from "valibot";
import { DEFAULT_IGNORED_COOKIES } from "../http/cookies.ts";
import {
  count,
  DEFAULT_CACHE_MAX_BYTES,
  DEFAULT_MAX_ENTRY_BYTES,
  MAX_CACHE_BYTES,
  MAX_ENTRY_BYTES_LIMIT,
  MAX_SHARED_BYTES,
  MIN_FILL_BUDGET_BYTES,
  ttl,
} from "./fields.ts";
import { array, boolean, lengthAtLeast, string, strictObject } from "./checks.ts";

/** `cache`: What is stored, and how much. */
export const cacheSection = v.optional(
  strictObject({
    /** Cache API name (Workers) or store namespace (Redis). */
    name: v.optional(
      v.pipe(
        string(),
        lengthAtLeast(1),
        // Checked here, not only when a fleet connects: there it stopped the process after its
        // Redis connection was open, which then kept it from exiting, and check-config passed it.
        v.check(
          (name) => !/[{}]/.test(name),
          "cache.name must not contain { or }: it is part of the Redis key prefix, where braces are Cluster hash tags",
        ),
      ),
      "herdless",
    ),
    /** Memory budget of the in-process store (Node), in bytes. */
    maxBytes: v.optional(count("cache.maxBytes", 1024, MAX_CACHE_BYTES), DEFAULT_CACHE_MAX_BYTES),
    /** Bodies larger than this are still shared by every waiting request, streamed, but not stored. */
    maxEntryBytes: v.optional(count("cache.maxEntryBytes", 1, MAX_ENTRY_BYTES_LIMIT), DEFAULT_MAX_ENTRY_BYTES),
    /**
     * What the bodies still arriving to be stored may hold together in one Node process or
     * Worker isolate; past it a body is streamed to its clients and not stored. Default: a
     * quarter of maxBytes (at least 1 MiB) on Node (store/fill-budget.ts), 64 MiB on a Worker isolate.
     */
    fillBudgetBytes: v.optional(count("cache.fillBudgetBytes", MIN_FILL_BUDGET_BYTES, MAX_CACHE_BYTES)),
    /**
     * What a Redis fleet's stored entries may cost Redis together; past it the entries written
     * longest ago are evicted, never the fleet's coordination keys. Default: four times
     * maxBytes, at least maxEntryBytes (node/redis/store-bound.ts).
     */
    sharedMaxBytes: v.optional(count("cache.sharedMaxBytes", 1024, MAX_SHARED_BYTES)),
    /** How long past its last servable instant a stale entry is kept for revalidation and breaker-open serving. */
    retainStaleMs: v.optional(ttl("cache.retainStaleMs"), 24 * 3600_000),
    /** Show the origin's Cache-Tag and Surrogate-Key headers to clients (herdless consumes them for purges). */
    exposeTagHeaders: v.optional(boolean(), false),
    /**
     * Cookies that do not make a request personal (analytics, Cloudflare's own); `*` at the
     * end matches a prefix. A request whose cookies are all named here is cached as if it had
     * none, and they are not sent on fills (http/cookies.ts).
     */
    ignoreCookies: v.optional(array(v.pipe(string(), lengthAtLeast(1))), [...DEFAULT_IGNORED_COOKIES]),
  }),
  {},
);
