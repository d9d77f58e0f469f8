import type { FillRequest, FillResult, RequesterFields } from "./coordinator.ts";
import { applyPurge, purgeVerdict } from "../admin/purge.ts";
import { routeFor, type Config } from "../config.ts";
import { headerList } from "../http/http.ts";
import type { Entry } from "../http/entry.ts";
import { variantKey } from "../http/key.ts";
import type { StreamedOriginResponse } from "../origin/origin-client.ts";
import { askedBefore } from "../store/lookup.ts";
import { SharedBody } from "./shared-body.ts";
import type { SharedBodyLimits } from "./laggards.ts";
import { fieldsDigest } from "../http/asked-by.ts";
import { decideOnFailure } from "../http/decision.ts";
import { clientInput } from "../origin/client-inputs.ts";

/**
 * A flight whose body is still arriving: every caller reads its own stream of `shared`.
 * The lease stays held until the body ended and was stored (`done`).
 */
export interface SharedFlight {
  kind: "shared";
  head: Omit<Entry, "body">;
  shared: SharedBody;
  /** The leader's stream, taken before the body could pass `keepBytes` without a reader. */
  first: ReadableStream<Uint8Array> | undefined;
  bytes: number | undefined;
  size: Extract<FillResult, { kind: "stream" }>["size"];
  fwdStatus: number;
  /** Settles once the body ended, the entry was stored (if it could be) and the lease released. */
  done: Promise<void>;
  /** Relayed from another process's flight: every caller here joined it (collapsed), none leads it. */
  relayed?: true;
  /** The leader's own fields (coordinator.ts RequesterFields): in its stream's answer only, never relayed. */
  requesterFields?: RequesterFields;
  /** See {@link credentialsOf}: the flight answered that Authorization, and its callers sending it alone share it. */
  credentials?: string;
}

/**
 * Result of the one flight per key; each caller's stream is decided per caller afterwards.
 * `alone`: another process's flight got an answer meant for one client; each caller asks on its own.
 */
export type FlightResult = Exclude<FillResult, { kind: "stream" }> | SharedFlight;

/**
 * A flight that found, once it held its key's lease, that the store knows the URL varies on
 * `vary` while its callers came by the primary key (their edge did not know it yet): it
 * fetched nothing, and each caller fills its own variant under that variant's lease, the one
 * an edge that knew the Vary takes. Under the primary key's lease the two fetched the same
 * variant side by side: twice within its lifetime in a fleet (or a Durable Object).
 */
export interface VariesFlight {
  kind: "varies";
  vary: readonly string[];
}

/** The variant key `request` fills after a {@link VariesFlight}. */
export function variantOf(request: FillRequest, flight: VariesFlight): string {
  return variantKey(request.primary, flight.vary, headerList(request.headers));
}

/**
 * A storable answer whose body is still arriving: one read of it, for every caller; up to
 * `limits.keepBytes` of it is kept so a caller that joins late still gets the whole body.
 */
export function shareBody(entry: Entry, res: StreamedOriginResponse, limits: SharedBodyLimits): SharedFlight {
  const declared = res.declaredBytes;
  const maxEntryBytes = limits.keepBytes;
  const shared = new SharedBody(res.body, {
    ...limits,
    ...(declared !== undefined ? { declaredBytes: declared } : {}),
  });
  const { body: _empty, ...head } = entry;
  return {
    kind: "shared",
    head,
    shared,
    first: shared.reader(),
    bytes: declared,
    size:
      declared === undefined
        ? "unknown"
        : declared > maxEntryBytes
          ? "too-large"
          : shared.overBudget
            ? "over-budget"
            : "fits",
    fwdStatus: res.status,
    done: Promise.resolve(),
  };
}

/**
 * This caller's stream of a shared flight, or undefined when the start of the body is gone.
 * The leader (not `collapsed`) takes the stream opened before the body could run ahead.
 */
export function streamOf(flight: SharedFlight, collapsed: boolean): FillResult | undefined {
  let body = collapsed ? undefined : flight.first;
  if (body) flight.first = undefined;
  else body = flight.shared.reader();
  if (!body) return undefined;
  const own = collapsed ? undefined : flight.requesterFields;
  const credentials = flight.credentials !== undefined ? { credentials: flight.credentials } : {};
  return { ...streamAnswer(flight, body), collapsed, ...(own?.length ? { requesterFields: own } : {}), ...credentials };
}

/**
 * RFC 9111 §3.5: the Authorization a fill carried as its own (a route that does not cache
 * credentials sends a request's Authorization on its own fill only). Its answer, even one
 * storable for others (`public`, `s-maxage`, `must-revalidate`), is that client's: the
 * callers collapsed onto its flight without the same Authorization never take it (they ask
 * for themselves, and may then find it stored). Before, an anonymous visitor arriving while
 * a signed-in user's fill ran was handed that user's page (`max-age=0, must-revalidate`:
 * stale at once, to be revalidated before any reuse).
 */
export function credentialsOf(config: Config, request: FillRequest): string | undefined {
  if (routeFor(config, request.path).cacheAuthorized) return undefined;
  return headerList(request.headers).get("authorization") ?? undefined;
}

/** A flight's answer marked with the {@link credentialsOf} its request carried. */
export function forCredentials(result: FlightResult, credentials: string | undefined): FlightResult {
  if (credentials === undefined || (result.kind !== "entry" && result.kind !== "shared")) return result;
  return { ...result, credentials };
}

/**
 * Whether a caller may take the answer of the flight it joined: only the answer to its own
 * credentials (the caller's {@link credentialsOf}: another client's Authorization is
 * that client's, and a signed-in caller gets its own answer, RFC 9111 §3.5, never the one an
 * anonymous request was given, which was handed to a signed-in user arriving while it ran:
 * the signed-out page), nor one a hard purge the caller knows of covers, nor one asked of the
 * origin before a write to the URL the caller knew of when it asked (`writtenAt`, RFC 9111
 * §4.4: read-your-writes). A flight that asked the origin before an operator's purge or a
 * client's `POST` brings the page as it was before it: its own callers asked for it then, but
 * a caller that arrived after the purge or the write returned was handed that old page too,
 * while the fetch they overtook was still running.
 */
export function mayTakeJoined(result: FillResult | SharedFlight, request: FillRequest, config: Config): boolean {
  const head = "head" in result ? result.head : "entry" in result ? result.entry : undefined;
  if (head && request.purges && purgeVerdict(head, request.primary, request.purges) === "hard") return false;
  if (head && askedBefore(head, request.writtenAt)) return false;
  return ("credentials" in result ? result.credentials : undefined) === credentialsOf(config, request);
}

/**
 * Whether the answer of a flight the caller joined is another request's unconfirmed error: a
 * `400`, `413`, `414` or `5xx` stored unconfirmed (asked-by.ts, Entry `askedBy`), a failure on
 * an error status the origin gave that one request, or a refusal of a key only that request's
 * failures backed off (FillResult `askedBy`), with a digest other than this caller's. Such a
 * caller asks again, and the callers asking again collapse onto one flight of their own,
 * whose error, if the origin fails them too, confirms the first (a second, different request
 * got it) and is theirs. Before, every request that collapsed onto the fill an attacker timed
 * at a cold or expired key (an `Accept-Language: xx` the application crashes on, a
 * `User-Agent` its WAF refuses) was handed the attacker's error, whose storing herdless kept
 * from everyone else. A failure a stored copy stands in for (stale-if-error) answers the
 * caller with that copy: it takes it.
 *
 * @example
 * if (joined && (await othersUnconfirmed(value, request, config, now))) return this.answer({ ...request, confirming: true }, true);
 */
export async function othersUnconfirmed(
  result: FillResult | SharedFlight,
  request: FillRequest,
  config: Config,
  now: number,
): Promise<boolean> {
  const askedBy = unconfirmedBy(result, config, now);
  return askedBy !== undefined && askedBy !== (await fieldsDigest(request.headers));
}

/**
 * Waits, for a caller about to ask again (othersUnconfirmed) whose request carries an input
 * of its client's own (clientInput: an `X-Debug`, a value outside ASCII), until the callers
 * asking again with it have had a turn to make their flight: it joins theirs rather than
 * lead it. Led by it, the attacker's second request (its `X-Debug` again, another
 * `User-Agent`) was the second, different request whose error every visitor that had
 * waited on the first was handed; led by a visitor's, the origin is asked what a visitor
 * gets.
 */
export async function afterOrdinaryCallers(request: FillRequest, config: Config): Promise<void> {
  if (clientInput(request.headers, config) !== undefined) await new Promise((resolve) => setTimeout(resolve, 0));
}

function unconfirmedBy(result: FillResult | SharedFlight, config: Config, now: number): string | undefined {
  switch (result.kind) {
    case "entry":
      return result.entry.askedBy;
    case "stream":
    case "shared":
      return result.head.askedBy;
    case "failed":
      // A copy that stands in for the failure answers with the page: nothing of the other request's.
      if (decideOnFailure(result.stale, result.code, config, now).kind === "stale-if-error") return undefined;
      return result.askedBy;
    default:
      return undefined;
  }
}

/**
 * The answer of a flight the caller joined, as a soft purge the caller knows of leaves it: a
 * flight asked of the origin before the purge brings the page as it was, the soft-purged copy,
 * stale from the purge on ({@link applyPurge}). A request that arrived after an operator's
 * soft purge returned and joined a fetch begun before it was handed that page as fresh (a
 * hard purge it never joins: {@link mayTakeJoined}).
 */
export function softPurgedJoin(result: FillResult, request: FillRequest): FillResult {
  const { primary, purges } = request;
  if ((result.kind !== "entry" && result.kind !== "stream") || !result.collapsed || !purges) return result;
  const head = result.kind === "entry" ? result.entry : result.head;
  const purged =
    purgeVerdict(head, primary, purges) === "soft" && applyPurge({ ...head, body: NO_BODY }, primary, purges);
  if (!purged) return result;
  const stale = { staleAt: purged.staleAt, swrUntil: purged.swrUntil };
  if (result.kind === "stream") return { ...result, head: { ...result.head, ...stale }, softPurged: true };
  return { ...result, entry: { ...result.entry, ...stale }, softPurged: true };
}

const NO_BODY = new Uint8Array(0);

/** The flight's head and sizes around one reader's `body`: a caller's stream, here or in another process. */
export function streamAnswer(flight: SharedFlight, body: ReadableStream<Uint8Array>) {
  return {
    kind: "stream" as const,
    head: flight.head,
    body,
    ...(flight.bytes !== undefined ? { bytes: flight.bytes } : {}),
    size: flight.size,
    fwdStatus: flight.fwdStatus,
  };
}

/**
 * Whether a flight's answer must be validated before anyone else may have it (RFC 9111 §4: a
 * stored response that is not fresh is reused only once validated, §4.3): stale on arrival
 * (`no-cache`, `max-age=0`, a validator without a lifetime, an `Age` past its `max-age`) and
 * past any stale-while-revalidate. It answers the request that made the flight; a caller that
 * joined the flight goes to the origin alone (`alone`), as for an answer meant for one client.
 * Before, every caller that came while it ran took it: an API answering `no-cache` with an
 * `ETag` handed the answer to one client's key to everyone who asked at the same time, and a
 * revalidation made with an attacker's headers (a `304` to their `ETag`) validated the
 * attacker's copy for every caller that joined it.
 *
 * @example
 * if (joined && value.kind === "entry" && validatesAlone(value.entry)) return { kind: "alone" };
 */
export function validatesAlone(head: Pick<Entry, "storedAt" | "staleAt" | "swrUntil" | "mustRevalidate">): boolean {
  return head.staleAt <= head.storedAt && (head.mustRevalidate || head.swrUntil <= head.storedAt);
}

/**
 * An entry or stream result as a caller that joined someone else's flight gets it: collapsed,
 * not `stored`, and without the fields that were the leader's alone ({@link RequesterFields}).
 *
 * @example
 * if (joined && value.kind === "entry") return asJoined(value);
 */
export function asJoined<R extends Extract<FillResult, { kind: "entry" | "stream" }>>(result: R): R {
  const { requesterFields: _leaders, ...rest } = result;
  // `stored` (Cache-Status, cache-status.md) is the leader's: this caller's request stored
  // nothing, as a joiner of a Worker isolate's flight (isolate-flights.ts) says too.
  return (rest.kind === "entry" ? { ...rest, collapsed: true, stored: false } : { ...rest, collapsed: true }) as R;
}

/**
 * Whether a flight's origin call may not queue for a permit (OriginGuard `ifFree`): a
 * foreground fill over the request's own variant, stored, that stale-if-error lets answer
 * (RFC 5861 §4). With every permit taken, that copy answers at once (ORIGIN_BUSY, served
 * stale) instead of after up to `origin.queueTimeoutMs` in the queue, which a few slow
 * uncacheable requests could keep full; the first request that finds a permit free renews
 * it. A client's own `no-cache` (`revalidate`) and a fill with its own credentials wait for
 * the origin as before, and so does a copy stale-if-error does not cover.
 */
export function standsInWhenBusy(
  config: Config,
  request: FillRequest,
  stored: Entry | undefined,
  now: number,
): boolean {
  if (request.priority !== "foreground" || request.revalidate === true || stored?.key !== request.key) return false;
  if (stored.mustRevalidate || stored.negative || now >= stored.sieUntil) return false;
  return credentialsOf(config, request) === undefined;
}
