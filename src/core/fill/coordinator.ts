import type { Entry } from "../http/entry.ts";
import { isHerdlessError, type HerdlessErrorCode } from "../errors.ts";
import type { Priority } from "../guard/origin-guard.ts";
import type { PurgeSnapshot } from "../admin/purge.ts";
import type { InterimListener } from "../origin/origin-client.ts";

/** What an edge asks the coordinator of a key: an entry at least as good as what it holds. */
export interface FillRequest {
  /** The primary key (see key.ts). */
  primary: string;
  /** The variant key the caller needs (the primary key when nothing is known to vary). */
  key: string;
  /** The origin URL to fetch. */
  url: string;
  /** Request path, for the route policy. */
  path: string;
  /** Headers to send to the origin (already filtered by the edge). */
  headers: [string, string][];
  priority: Priority;
  /** The purges the edge honours; the coordinator applies them to its own copy too. */
  purges?: PurgeSnapshot;
  /**
   * RFC 9111 §4.4: when the URL was last written to (an unsafe request's success) as far as
   * the caller knew when it asked: an answer asked of the origin before then is not this
   * caller's (flight.ts mayTakeJoined). The coordinator adds the writes it noted itself.
   */
  writtenAt?: number;
  /**
   * The client asked for a validated answer (request `no-cache` on a route that honours it):
   * the stored copy does not answer by itself; the caller joins the flight in progress or
   * the coordinator starts one (still one origin request per key at a time).
   */
  revalidate?: boolean;
  /**
   * The caller holds a fresh copy in its refresh-ahead window (the route's `refreshAhead`) and
   * came to renew it: a fresh stored entry answers only once it is out of that window (another
   * edge renewed it already); otherwise the coordinator starts the one renewal, in the background.
   */
  refreshAhead?: boolean;
  /**
   * The asking client's ear for the origin's interim answers (EngineRequest.onInterim): used
   * when this request leads the flight in the foreground; a caller that joins a flight,
   * waits on another process's, or refreshes in the background hears none. Runtime-local:
   * the Worker sets none, so nothing of it crosses RPC to a key's object.
   */
  onInterim?: InterimListener;
  /**
   * The caller asks again because the flight it joined ended in another request's unconfirmed
   * error (flight.ts othersUnconfirmed): an error status this flight gets from the origin is a
   * second, different request's, and confirms it (no `askedBy` on its failure), so the callers
   * asking again with it take it rather than ask a third time.
   */
  confirming?: true;
}

/** A response for one caller only (uncacheable, or too large to keep). */
export interface PassResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  /**
   * The origin's Content-Length (RFC 9110 §8.6), shown to the client: the length of a body
   * that streams, or for a HEAD or a 304 the length a 200 to GET would have. Absent when the
   * origin sent none or the runtime's fetch decoded the body (the value counted other bytes).
   */
  contentLength?: number;
}

/**
 * What the coordinator answers:
 * - `entry`: a stored entry; `fwdStatus` is set when this call's flight went to the origin,
 *   `collapsed` when the caller joined someone else's flight;
 * - `stream`: the origin's answer arriving now, shared by every caller of the flight: each
 *   gets its own stream of the whole body as it arrives (it errors, rather than ends, if the
 *   origin fails mid-body); `head` is the entry it becomes once complete, and `size` says
 *   whether it will be stored (`fits`: declared within `cache.maxEntryBytes`; `too-large`:
 *   declared above, shared but not kept; `over-budget`: declared within it, but the bodies
 *   this process keeps to store already hold `cache.fillBudgetBytes`: shared, not kept;
 *   `unknown`: no length declared, kept if it fits both);
 * - `pass`: the origin's answer, not storable, for this caller alone;
 * - `alone`: the caller joined a flight whose answer cannot be shared (uncacheable, or a
 *   streamed body): it must go to the origin by itself, through the guard;
 * - `failed`: no fresh answer; `stale` is the best stored copy, if any, and `response` the
 *   origin's own error answer to relay when nothing stale may be served.
 */
export type FillResult =
  | {
      kind: "entry";
      entry: Entry;
      fwdStatus?: number;
      collapsed: boolean;
      stored: boolean;
      /** The copy has expired and answers while a refresh-ahead renews it (refresh-ahead.ts): the edge may follow that renewal. */
      renewing?: true;
      /** The URL was written to while this answer was asked for (lookup.ts invalidatedWhileAsked): kept in no tier. */
      unkept?: true;
      /** A soft purge the caller knows of covers the answer of the flight it joined (flight.ts softPurgedJoin). */
      softPurged?: true;
      /** See {@link Credentials}. */
      credentials?: string;
      /** See {@link RequesterFields}. */
      requesterFields?: RequesterFields;
    }
  | {
      kind: "stream";
      head: Omit<Entry, "body">;
      body: ReadableStream<Uint8Array>;
      /** The body's length, when the origin declared it. */
      bytes?: number;
      size: "fits" | "too-large" | "over-budget" | "unknown";
      fwdStatus: number;
      collapsed: boolean;
      /** A soft purge the caller knows of covers the flight it joined (flight.ts softPurgedJoin): its head is stale. */
      softPurged?: true;
      /** See {@link RequesterFields}. */
      requesterFields?: RequesterFields;
      /** See {@link Credentials}. */
      credentials?: string;
    }
  | {
      kind: "pass";
      response: PassResponse;
      fwdStatus: number;
      reason: "uncacheable" | "too-large";
      /** The answer is about this request, not the URL (settle.ts): the stored copies stay, the edge's too. */
      keepsCopy?: true;
      /**
       * The answer is about the flight's own request (settle.ts blamesTheRequest: an attacker's
       * header the origin refused): a caller without such input that joined it asks again.
       */
      ownInput?: true;
    }
  | { kind: "alone" }
  | {
      kind: "failed";
      code: HerdlessErrorCode;
      message: string;
      retryAfterMs?: number;
      fwdStatus?: number;
      stale?: Entry;
      response?: PassResponse;
      /**
       * `response` answers the request that made the flight only: it was meant for one client
       * (`private`, `no-store`, `Set-Cookie`, or the answer to that request's credentials). A
       * caller that joined the flight gets the failure without it ({@link joinedFailure}).
       */
      personal?: true;
      collapsed: boolean;
      /** This flight's sick call started the key's backoff (for the counters; absent otherwise). */
      backoffStarted?: boolean;
      /**
       * The origin call failed on a request that carried its client's own input (clientInput
       * in origin/client-inputs.ts): a caller without such input that joined it asks again.
       */
      ownInput?: true;
      /**
       * The failure is unconfirmed: the origin's error status to one request (asked-by.ts
       * fieldsDigest of its fields), or a key's backoff only that request's own failures
       * started. It is the answer of a request with this digest alone; a caller with another
       * that joined it asks again (flight.ts othersUnconfirmed).
       */
      askedBy?: string;
    };

/**
 * Fields the origin sent with a flight's answer that the stored entry does not keep (those a
 * qualified `no-cache="…"` or `private="…"` names, response-entry.ts requesterFields): set only
 * on the result of the caller whose request made the flight, and answered to that caller
 * alone. A caller that joined the flight gets the result without them (flight.ts asJoined).
 */
export type RequesterFields = [string, string][];

/**
 * The single place, per key, that talks to the origin: a Durable Object on Cloudflare, a
 * Redis lease in a Node fleet, an in-process flight map in one Node process.
 */
export interface Coordinator {
  fill(request: FillRequest): Promise<FillResult>;
  /**
   * RFC 9111 §4.4: an unsafe request to the URL of `primary` succeeded; no response stored
   * for it before then is served again, whichever variant (the one `headers` select may go at once).
   */
  invalidate?(primary: string, headers: [string, string][]): Promise<void>;
}

/**
 * A failed flight as a caller that joined it gets it: the origin's error answer too, unless
 * that answer was one client's ({@link FillResult} `personal`), which would hand the first
 * requester's session cookie or personal error page to everyone who waited with it; such a
 * caller gets the failure alone (its stale copy, or herdless's own 502).
 *
 * @example
 * if (value.kind === "failed") return joinedFailure(value);
 */
export function joinedFailure(
  result: Extract<FillResult, { kind: "failed" }>,
): Extract<FillResult, { kind: "failed" }> {
  if (!result.personal) return { ...result, collapsed: true };
  const { response: _theirs, personal: _personal, ...failure } = result;
  return { ...failure, collapsed: true };
}

/** Cancels the stream of a result nobody will read; a body worth keeping is still read and stored. */
export function discardStream(result: FillResult): FillResult {
  if (result.kind === "stream") void result.body.cancel().catch(() => undefined);
  if (result.kind === "pass" && result.response.body instanceof ReadableStream)
    void result.response.body.cancel().catch(() => undefined);
  return result;
}

/**
 * Whether the coordinator answered from its own stored copy: no flight of this call went to
 * the origin (`fwdStatus` unset) and the caller joined none (a flight's waiters, and a caller
 * that queued on another holder's lease, are `collapsed`: they waited on the origin).
 */
export function fromCoordinatorCopy(result: Extract<FillResult, { kind: "entry" }>): boolean {
  return result.fwdStatus === undefined && !result.collapsed;
}

/** A fill that failed with `error` before any flight answered (the coordinator or its fallback threw). */
export function failedFill(error: unknown): FillResult {
  const code: HerdlessErrorCode = isHerdlessError(error) ? error.code : "COORDINATOR_UNAVAILABLE";
  return { kind: "failed", code, message: error instanceof Error ? error.message : String(error), collapsed: false };
}
