import { applyPurge, type PurgeSnapshot } from "../admin/purge.ts";
import type { Entry } from "../http/entry.ts";
import { lastWrite, standingAfterWrites } from "../store/lookup.ts";
import type { Store } from "../store/store.ts";
import type { FillRequest, FillResult } from "./coordinator.ts";

/**
 * Stored copies of one URL read earlier, as they may stand in for an origin answer now
 * (stale-if-error, a busy, backing-off or unreachable origin): not one a hard purge in
 * `purges` covers (a soft one leaves it stale since the purge), nor one stored before a write
 * to the URL that `store` now knows of (lookup.ts standingAfterWrites, one read for all). A flight reads its copy when it starts
 * and may fail `origin.timeoutMs` later; its callers, and those that joined it after a purge
 * or a `POST` returned, were handed that copy in place of the failure. docs/purging.md: a
 * hard-purged copy is never served again once the purge returns, not even as stale-if-error.
 *
 * @example
 * const standing = await standingCopies(near, primary, [result.stale, nearStale], await purges());
 */
export function standingCopies(
  store: Store,
  primary: string,
  copies: readonly Entry[],
  purges: PurgeSnapshot | undefined,
): Promise<Entry[]> {
  // An unconfirmed error (asked-by.ts) never stands in: it may be another request's answer.
  const confirmed = copies.filter((copy) => copy.askedBy === undefined);
  const purged = purges ? confirmed.flatMap((copy) => applyPurge(copy, primary, purges) ?? []) : confirmed;
  return standingAfterWrites(store, primary, purged);
}

/**
 * A coordinator's answer with the copy it carries in place of a failure ({@link standingCopies})
 * checked against the caller's purges and the coordinator's store as they are now: the flight
 * that read the copy may be the caller's own or one it joined, which read it earlier.
 *
 * @example
 * return standingAnswer(store, request, await flight(request));
 */
export async function standingAnswer(store: Store, request: FillRequest, result: FillResult): Promise<FillResult> {
  if (result.kind !== "failed" || result.stale === undefined) return result;
  const [stale] = await standingCopies(store, request.primary, [result.stale], request.purges);
  if (stale === result.stale) return result;
  const { stale: _gone, ...failure } = result;
  return stale ? { ...failure, stale } : failure;
}

/**
 * `request` with the last write to its URL this process noted in `store` before `now`
 * (FillRequest `writtenAt`), when it knew of none as recent: the writer's next request, at the
 * key's coordinator, is never handed an answer asked of the origin before its write.
 *
 * @example
 * const asked = withWritesNoted(store, request, clock.now());
 */
export function withWritesNoted(store: Store, request: FillRequest, now: number): FillRequest {
  const noted = lastWrite(store, request.primary);
  if (noted === undefined || noted > now || noted <= (request.writtenAt ?? -Infinity)) return request;
  return { ...request, writtenAt: noted };
}
