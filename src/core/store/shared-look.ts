import type { RoutePolicy } from "../config.ts";
import type { RequestFacts } from "../http/decision.ts";
import type { HeaderReader } from "../http/http.ts";
import type { RequestDirectives } from "../http/request-directives.ts";
import type { Clock } from "../clock.ts";
import type { Entry } from "../http/entry.ts";
import { lookup, type LookupResult } from "./lookup.ts";
import type { Store } from "./store.ts";

/**
 * Whether a request is answered by a stored copy or not at all, never by a fill of the
 * coordinator: one with `only-if-cached` (RFC 9111 §5.2.1.7: "respond using a stored
 * response"), or a visitor's cookie request that only a public copy may answer
 * (decision.ts sharedWithCookies; else it is relayed alone).
 */
export function answeredAlone(directives: RequestDirectives, facts: RequestFacts, route: RoutePolicy): boolean {
  return directives.onlyIfCached || (facts.hasCookie && !route.cacheAuthorized && !facts.hasAuthorization);
}

/**
 * The near tier's lookup, then, for a request {@link answeredAlone} the near tier has nothing
 * fresh for, the fleet's shared tier (Redis). Such a request never asks the coordinator, so
 * before, a member whose memory lacked the page answered `504`, or relayed the visitor to
 * the origin, while the shared tier held the copy another member stored: the fleet answered
 * as many caches, not one. The shared copy replaces the near one only when stored later, and
 * never one stored before a write the near tier saw (its invalidation mark); it is handed to
 * `keep` (the near tier's, as for a fill's entry), so the next such request reads no Redis.
 *
 * @example
 * const found = await nearThenShared({ near, shared, clock }, primary, selecting, true, keep);
 */
export async function nearThenShared(
  o: { near: Store; shared?: Pick<Store, "get">; clock: Clock },
  primary: string,
  selecting: HeaderReader,
  alone: boolean,
  keep: (entry: Entry) => void,
): Promise<LookupResult> {
  const near = await lookup(o.near, primary, primary, selecting);
  if (!alone || !o.shared || (near.entry && o.clock.now() < near.entry.staleAt)) return near;
  const there = await lookup(o.shared, primary, primary, selecting);
  const entry = there.entry;
  if (!entry) return near;
  if (near.invalidatedAt !== undefined && entry.storedAt <= near.invalidatedAt) return near;
  if (near.entry && near.key === there.key && near.entry.storedAt >= entry.storedAt) return near;
  keep(entry);
  return there;
}
