import { isHerdlessError } from "../errors.ts";
import type { Entry } from "../http/entry.ts";
import { invalidatedWhileAsked, putVaryPointer, servableWinner, writtenWhileAsked } from "../store/lookup.ts";
import type { Store } from "../store/store.ts";
import type { RequesterFields } from "./coordinator.ts";
import type { FlightResult } from "./flight.ts";

/**
 * A write (or a read behind one) to the store of the key's coordinator, or `otherwise` when that
 * store is unreachable (a fleet's Redis gone or stalled while the origin answered): the answer is
 * the flight's callers' all the same, and the shared tier simply does not get it. Thrown, it
 * failed the whole flight after its origin call: the process made the call again on its own
 * (local single-flight), one more origin request for a page it had, and its clients waited for
 * both.
 */
export async function unlessUnavailable<T, U>(write: Promise<T>, otherwise: U): Promise<T | U> {
  try {
    return await write;
  } catch (error) {
    if (isHerdlessError(error, "COORDINATOR_UNAVAILABLE")) return otherwise;
    throw error;
  }
}

/**
 * Writes `entry` (and its Vary pointer); when a newer entry won the race (fencing), answers with
 * that one. `own`: the fields the answer to this flight's request carries beside the entry
 * (coordinator.ts RequesterFields), only with the entry they came with.
 */
export async function storeEntry(
  store: Store,
  entry: Entry,
  primary: string,
  fwdStatus: number,
  own: RequesterFields = [],
): Promise<FlightResult> {
  const unshared = { kind: "entry" as const, entry, fwdStatus, collapsed: false, stored: false };
  // Asked before a write to the URL succeeded: for this flight's callers, kept in no tier.
  if (writtenWhileAsked(store, primary, entry)) return { ...unshared, unkept: true };
  const written = await unlessUnavailable(store.put(entry), undefined);
  if (written === undefined) return own.length > 0 ? { ...unshared, requesterFields: own } : unshared;
  if (written && entry.key !== primary) await unlessUnavailable(putVaryPointer(store, entry, primary), false);
  const won = written ? entry : await unlessUnavailable(servableWinner(store, entry.key, primary), undefined);
  // Refused over the mark of a write it was asked before, which another fleet member saw: as above.
  if (!won && (await invalidatedWhileAsked(store, primary, entry).catch(() => false)))
    return { ...unshared, unkept: true };
  const winner = won ?? entry;
  const result = { kind: "entry" as const, entry: winner, fwdStatus, collapsed: false, stored: written };
  return winner === entry && own.length > 0 ? { ...result, requesterFields: own } : result;
}
