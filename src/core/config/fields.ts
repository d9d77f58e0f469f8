import * as v from "valibot";
import { integer, number, safeInteger } from "./checks.ts";

/** The longest delay a timer can take: Node and workerd fire longer ones at once (signed 32-bit ms). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The longest lifetime (TTL, stale window, retention) an entry may be given: one year. */
export const MAX_TTL_MS = 365 * 24 * 3600_000;
/** The largest in-process cache: 64 GiB, far beyond any heap a Node process is given. */
export const MAX_CACHE_BYTES = 2 ** 36;
/** The largest bound on a fleet's entries in Redis: 1 TiB, past the memory of any Redis host. */
export const MAX_SHARED_BYTES = 2 ** 40;

/** A duration in whole milliseconds; `max` is what the runtime can honour for this use. */
export const ms = (what: string, min = 0, max = MAX_TIMER_MS) =>
  v.pipe(
    number(`${what} must be a number of milliseconds`),
    integer(`${what} must be a whole number of milliseconds`),
    safeInteger(`${what} must be a whole number of milliseconds`),
    v.minValue(min, `${what} must be at least ${min} ms`),
    v.maxValue(
      max,
      max === MAX_TIMER_MS
        ? `${what} must be at most ${max} ms (about 24.8 days): a longer timer cannot be honoured`
        : `${what} must be at most ${max} ms (one year)`,
    ),
  );
/** A lifetime of stored entries (not a timer): up to a year. */
export const ttl = (what: string) => ms(what, 0, MAX_TTL_MS);
/** A whole count or size between `min` and `max`. */
export const count = (what: string, min: number, max: number) =>
  v.pipe(
    number(`${what} must be a number`),
    integer(`${what} must be a whole number`),
    safeInteger(`${what} must be a whole number`),
    v.minValue(min, `${what} must be at least ${min}`),
    v.maxValue(max, `${what} must be at most ${max}`),
  );

/**
 * Bodies up to this size are stored on every runtime (25 MiB): Durable Object storage and
 * Redis keep them in chunks below their per-value caps, the Cache API takes far larger objects.
 */
export const DEFAULT_MAX_ENTRY_BYTES = 25 * 1024 * 1024;

/** `cache.maxBytes` by default: what one Node process's in-memory tier holds. */
export const DEFAULT_CACHE_MAX_BYTES = 256 * 1024 * 1024;
/** The largest `cache.maxEntryBytes` accepted: a flight keeps up to this many bytes in memory to store them. */
export const MAX_ENTRY_BYTES_LIMIT = 128 * 1024 * 1024;

/**
 * The least `cache.fillBudgetBytes` (and its default, whatever `cache.maxBytes`): the 1 MiB a
 * body past its keep is read ahead of its slowest reader. Within the 100 MiB of the Node bound.
 */
export const MIN_FILL_BUDGET_BYTES = 1024 * 1024;
/**
 * A Worker isolate's fill budget by default: half its 128 MB, of which an edge counts each
 * body twice (the chunks its requests share are those it copies into the Cache API), so about
 * 32 MiB of bodies, a quarter of the isolate as the read-ahead's (beside the 16 MiB memory
 * tier): a body of the default `cache.maxEntryBytes` fits.
 */
export const WORKER_FILL_BUDGET_BYTES = 64 * 1024 * 1024;

/** Bytes of one streamed origin body read ahead of its client by default (see `origin.readAheadBytes`). */
export const DEFAULT_READ_AHEAD_BYTES = 4 * 1024 * 1024;
/** Bytes every read-ahead of a process or isolate holds together at most by default (see `origin.readAheadBudgetBytes`). */
export const DEFAULT_READ_AHEAD_BUDGET_BYTES = 32 * 1024 * 1024;

/**
 * Open WebSocket tunnels per process or isolate by default (see `origin.maxWebSockets`). Not
 * derived from `origin.maxConcurrency`: that counts requests the origin works on at once, and
 * an open socket mostly idles (8 would be too few for any chat page). A thousand keeps a Node
 * process within 2,000 file descriptors and tens of MB of socket buffers.
 */
export const DEFAULT_MAX_WEB_SOCKETS = 1_000;
