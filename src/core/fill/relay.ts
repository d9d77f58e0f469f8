import type { Entry } from "../http/entry.ts";
import type { HerdlessErrorCode } from "../errors.ts";
import type { FillRequest, FillResult, PassResponse } from "./coordinator.ts";
import { applyPurge } from "../admin/purge.ts";
import { servesFields } from "../http/asked-by.ts";
import { streamAnswer, validatesAlone, type FlightResult, type SharedFlight, type VariesFlight } from "./flight.ts";
import { SharedBody } from "./shared-body.ts";
import type { SharedBodyLimits } from "./laggards.ts";
import type { Lease, LeaseManager } from "./lease.ts";

/** A body still arriving, as the flight's own callers get it. */
export interface RelayedStream {
  kind: "stream";
  head: Omit<Entry, "body">;
  body: ReadableStream<Uint8Array>;
  bytes?: number;
  size: Extract<FillResult, { kind: "stream" }>["size"];
  fwdStatus: number;
}

/** The origin's error answer (a 5xx without explicit freshness), for the flight's callers only. */
export interface RelayedFailure {
  kind: "failed";
  code: HerdlessErrorCode;
  message: string;
  fwdStatus?: number;
  retryAfterMs?: number;
  /** The leader's request alone got it (FillResult `askedBy`): a waiter with another asks again. */
  askedBy?: string;
  response: PassResponse & { body: Uint8Array };
}

/** What one flight's leader hands to the callers waiting on the same key in other processes. */
export type RelayedAnswer = RelayedStream | RelayedFailure;

/**
 * How the answer of one flight reaches the callers that wait on its key in other processes
 * (a Redis fleet), so they get what the leader's own callers get: the body as it arrives,
 * or the origin's error answer, which is theirs too (RFC 9111 §4.2.2: shared with the
 * fetch's waiters, never stored). Answers meant for one client (uncacheable: `private`,
 * `Set-Cookie`, `no-store`) are never relayed: the waiters are told to ask on their own.
 *
 * Contract: `offer` makes the answer readable under the leader's lease `token` and returns
 * the announcement that points at it (published on the key's fill channel); a stream's body
 * is read to its end or cancelled, never left unread. `take` reads an announced answer;
 * undefined when it is gone or no longer whole (the caller looks at the store, or asks again).
 *
 * @example
 * const message = await relay.offer(key, lease.token, { kind: "stream", head, body, size: "fits", fwdStatus: 200 });
 * // elsewhere, on hearing `message`:
 * const answer = await relay.take(key, message);
 */
export interface FlightRelay {
  offer(key: string, token: number, answer: RelayedAnswer): Promise<string | undefined>;
  take(key: string, message: string): Promise<RelayedAnswer | undefined>;
}

/** Announcement prefix of a relayed answer; what follows is the relay's own reference. */
export const RELAYED = "relayed:";

/** Announcement of an answer meant for one client: each waiter asks the origin on its own. */
export const ALONE = "alone";

/**
 * What a waiter that came late reads where a relayed answer would be: the lease's holder
 * streams a body it copied for nobody (no other process waited when its head came). The
 * waiter waits for that flight's end, however long the body takes, and then asks again: as a
 * caller of the leader's own process too late for the start of a body does (KeyCoordinator),
 * never a second origin request for the key at once. Before, it gave up after
 * `coordinator.waitTimeoutMs` with a 503 while the download still ran. A live event stream
 * is marked {@link ALONE} instead: it never ends by itself, so the late waiter asks on its own.
 */
export const STREAMING = "streaming";

/**
 * Announcement of a flight that failed on its leader's own input (`ownInput`), or of a lease
 * freed with no flight under it (a Node fleet's acquire that ran after its caller gave up):
 * the waiters elsewhere ask again under the lease, one after another, as this process's
 * joiners do. (A member that does not know it reads an unknown message the same way.)
 */
export const ASK_AGAIN = "ask-again";

/**
 * Tells other processes how the flight for `key` went (`message`: {@link announcement});
 * `stored` is the entry it stored, when it did: a runtime may hand a small one to the
 * waiters with the message, so they need not read it back from the store.
 */
export type AnnounceFill = (key: string, message: string, stored?: Entry) => void | Promise<void>;

/** What a caller waiting on another process's flight heard: its announcement, and the entry it stored when that came along. */
export interface FillHeard {
  message: string;
  entry?: Entry;
}

/**
 * How other processes' callers waiting on the key hear the end of a flight, so each gets
 * what the leader's own callers got: the stored entry (`done`), the origin's error answer
 * (relayed), the word to ask on their own (an answer for one client), or the failure; to look
 * again (`done` without an entry) after a flight that fetched nothing (a {@link VariesFlight}).
 * A string at once unless an error answer is offered to the relay first: the caller can
 * then free the lease before anything else it sends (see {@link endFlight}).
 */
export function announcement(
  relay: FlightRelay | undefined,
  key: string,
  token: number,
  result: FlightResult | VariesFlight | undefined,
): string | Promise<string> {
  // An answer about the leader's own input (an attacker's header the origin refused): the others ask again.
  if (result?.kind === "pass" && result.ownInput) return ASK_AGAIN;
  if (result?.kind === "pass" || result?.kind === "alone") return ALONE;
  // The entry's token: a waiter takes that entry even when it is already stale, within stale-while-revalidate.
  if (result?.kind === "entry") return `done:${result.entry.token}`;
  if (result?.kind !== "failed") return "done";
  if (result.ownInput) return ASK_AGAIN;
  const { response } = result;
  const failed = `failed:${result.code}`;
  // One client's answer (a Set-Cookie, `private`): the waiters elsewhere get the failure without it.
  if (!relay || !response || result.personal || !(response.body instanceof Uint8Array)) return failed;
  const answer: RelayedAnswer = {
    kind: "failed",
    code: result.code,
    message: result.message,
    ...(result.fwdStatus !== undefined ? { fwdStatus: result.fwdStatus } : {}),
    ...(result.retryAfterMs !== undefined ? { retryAfterMs: result.retryAfterMs } : {}),
    ...(result.askedBy !== undefined ? { askedBy: result.askedBy } : {}),
    response: { status: response.status, headers: response.headers, body: response.body },
  };
  return relay.offer(key, token, answer).then(
    (offered) => offered ?? failed,
    () => failed,
  );
}

/**
 * Ends a flight: frees its lease, then tells the other processes waiting on the key how it
 * ended (`message`: {@link announcement}). The release is sent when this is called, before
 * anything the process sends after it, so its next flight for the key finds the lease free
 * (Redis runs a connection's commands in order; the other leases free it at once); only an
 * error answer being offered to the relay (`message` pending) goes first. So a flight that
 * stored its entry may answer without waiting for this (KeyCoordinator); its announcement
 * (`stored`: that entry) is sent beside the release, not after its reply. Never rejects.
 *
 * @example
 * background(endFlight(o, key, lease, announcement(o.relay, key, lease.token, result), result.entry));
 */
export function endFlight(
  o: { leases: LeaseManager; announceFill?: AnnounceFill },
  key: string,
  lease: Lease,
  message: string | Promise<string>,
  stored?: Entry,
): Promise<void> {
  const announce = async (said: string) => {
    try {
      await o.announceFill?.(key, said, stored);
    } catch {
      // Waiters that miss it look again when their wait times out.
    }
  };
  const release = () => o.leases.release(lease).catch(() => false);
  // A stored entry's waiters take that entry (its token is in the announcement) and need no
  // lease: the announcement goes out beside the release, not a round trip after it. Every
  // other waiter may ask again under the lease, so it must find it free.
  if (stored && typeof message === "string") return Promise.all([release(), announce(message)]).then(() => undefined);
  if (typeof message === "string") return release().then(() => announce(message));
  return message.then(async (said) => {
    await release();
    await announce(said);
  });
}

/**
 * Offers a body still arriving to the other processes' callers, behind the leader's own
 * (they are answered first), and announces it; `body` is the relay's reader of the flight,
 * cancelled if it cannot be offered.
 */
export async function relayStream(
  o: { relay?: FlightRelay; announceFill?: AnnounceFill },
  key: string,
  token: number,
  flight: SharedFlight,
  body: ReadableStream<Uint8Array>,
): Promise<void> {
  const answer: RelayedAnswer = streamAnswer(flight, body);
  // An answer to its leader's own Authorization goes to no other process's waiters (flight.ts credentialsOf).
  const offered = flight.credentials === undefined ? o.relay?.offer(key, token, answer) : undefined;
  const message = await offered?.catch(() => undefined);
  // Never rejects: waiters that miss the announcement find the answer by the relay's pointer.
  if (message) await Promise.resolve(o.announceFill?.(key, message)).catch(() => undefined);
  else await body.cancel().catch(() => undefined);
}

/** A caller that waited `waitMs` on a lease whose holder never finished nor said it streams: given up. */
export function leaseStayedBusy(key: string, waitMs: number, stale: Entry | undefined): FlightResult {
  const message = `lease on ${key} stayed busy for ${waitMs} ms`;
  return { kind: "failed", code: "COORDINATOR_UNAVAILABLE", message, stale, collapsed: true };
}

/**
 * What a caller waiting on another process's flight makes of its announcement and of the
 * store after it (`filled`, `fresh` when it answers by itself): that entry, the relayed
 * answer, the word to ask on its own, that flight's failure; undefined to look again.
 */
export async function answerHeard(
  relay: FlightRelay | undefined,
  key: string,
  message: string | undefined,
  { before, filled, fresh }: { before: Entry | undefined; filled: Entry | undefined; fresh: boolean },
  limits: SharedBodyLimits,
  confirming = false,
): Promise<FlightResult | undefined> {
  if (filled && fresh) return { kind: "entry", entry: filled, collapsed: true, stored: false };
  // The flight's own answer, stored: its waiters' too, unless it must be validated for each (flight.ts validatesAlone).
  if (storedBy(message, filled))
    return validatesAlone(filled)
      ? { kind: "alone" }
      : { kind: "entry", entry: filled, collapsed: true, stored: false };
  // An answer for one client (private, Set-Cookie, no-store): each caller asks on its own, as the leader's do.
  if (message === ALONE) return { kind: "alone" };
  const relayed = message?.startsWith(RELAYED) ? await relay?.take(key, message).catch(() => undefined) : undefined;
  if (relayed) return fromRelay(relayed, before, limits);
  if (!message?.startsWith("failed:")) return undefined;
  const code = message.slice("failed:".length) as HerdlessErrorCode;
  // The origin answered that flight, but its answer was not relayed: nobody waited on the key
  // when it was offered, so this caller came between the offer and the announcement. It asks
  // again under the lease, as one coming after the flight does; the key's backoff, read under
  // the lease, still holds back a sick status. Not a caller that asks again after another
  // request's unconfirmed error (`confirming`): this second error status, to another flight,
  // confirms it, and asked once more, each member's callers cost the origin one request more.
  if (code === "ORIGIN_STATUS" && !confirming) return undefined;
  return {
    kind: "failed",
    code,
    message: `another process's fetch of ${key} failed (${code})`,
    stale: before,
    collapsed: true,
  };
}

/**
 * The entry a caller finds once another process's flight for its key ended: the one the
 * announcement carried when it stands in for the store's (the request's own key, not a
 * primary key that varies, whose variant is read; the caller's purges applied), else `read()`.
 * Never another request's unconfirmed error (asked-by.ts servedTo), as the store's read never
 * is: the caller asks again under the lease. Before, the attacker's `500` stored unconfirmed
 * on a cold key came with the announcement to every request waiting in other processes.
 */
export async function entryAfterWait(
  request: FillRequest,
  heard: FillHeard | undefined,
  read: () => Promise<Entry | undefined>,
): Promise<Entry | undefined> {
  const entry = heard?.entry;
  if (entry?.key !== request.key || (request.key === request.primary && entry.vary.length > 0)) return read();
  if (!(await servesFields(entry, request.headers))) return undefined;
  return request.purges ? applyPurge(entry, request.primary, request.purges) : entry;
}

/** Whether `entry` is the one the flight announced by `message` stored (or a newer one): its waiters' answer, fresh or not. */
function storedBy(message: string | undefined, entry: Entry | undefined): entry is Entry {
  const token = message?.startsWith("done:") ? Number(message.slice("done:".length)) : NaN;
  return entry !== undefined && Number.isFinite(token) && entry.token >= token;
}

/** Another process's answer as this process's flight: its callers all joined it. */
function fromRelay(answer: RelayedAnswer, before: Entry | undefined, limits: SharedBodyLimits): FlightResult {
  if (answer.kind === "stream") return followFlight(answer, limits);
  const { kind: _failed, ...failure } = answer;
  return { kind: "failed", ...failure, stale: before, collapsed: true };
}

/**
 * Another process's flight, its body arriving through the relay: one read of it for every
 * caller in this process, kept up to `limits.keepBytes` like the leader's own.
 */
function followFlight(relayed: RelayedStream, limits: SharedBodyLimits): SharedFlight {
  const shared = new SharedBody(relayed.body, {
    ...limits,
    ...(relayed.bytes !== undefined ? { declaredBytes: relayed.bytes } : {}),
  });
  return {
    kind: "shared",
    head: relayed.head,
    shared,
    first: undefined,
    bytes: relayed.bytes,
    size: relayed.size,
    fwdStatus: relayed.fwdStatus,
    done: shared.ended.then(() => undefined),
    relayed: true,
  };
}
