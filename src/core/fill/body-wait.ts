import type { Entry } from "../http/entry.ts";
import { decideOnFailure } from "../http/decision.ts";
import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";

/** Bodies up to this size are read whole before the callers are answered (see bufferedUpTo). */
const SMALL_BODY_BYTES = 64 * 1024;
/**
 * A pause this long in a small body, once it began, is the origin flushing it in parts: what
 * came goes on at once (see bufferedUpTo). Between the packets of a body sent in one go there
 * is no such gap on the way from a nearby origin; where there is one, the body is only streamed
 * (and stored once complete) instead of answered in one piece.
 */
const FLUSH_PAUSE_MS = 20;

/**
 * How much of the body to read before answering. Up to {@link SMALL_BODY_BYTES} when
 * there is no copy to fall back on: a body that size arrives in a packet or two, and whole
 * it is answered and stored in one piece; a larger one reaches callers as the origin sends
 * it, and so does one that stops for {@link FLUSH_PAUSE_MS} once it began (a page flushed in
 * parts: its head first, the rest once rendered, which read whole gave its visitors nothing
 * until the origin finished). Up to `cache.maxEntryBytes` when a stored copy may stand in for
 * a failure (stale-if-error): an origin that fails mid-body is then hidden behind that copy
 * rather than shown as an aborted body.
 */
export function bufferedUpTo(
  ctx: { config: Config; clock: Clock },
  stored: Entry | undefined,
): { maxBodyBytes: number; pauseMs?: number } {
  const { config, clock } = ctx;
  const hideable = decideOnFailure(stored, "ORIGIN_TRUNCATED", config, clock.now()).kind === "stale-if-error";
  if (hideable) return { maxBodyBytes: config.cache.maxEntryBytes };
  return { maxBodyBytes: Math.min(SMALL_BODY_BYTES, config.cache.maxEntryBytes), pauseMs: FLUSH_PAUSE_MS };
}
