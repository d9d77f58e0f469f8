import type { Clock } from "../clock.ts";
import { routeFor, type Config } from "../config.ts";
import type { FillRequest } from "./coordinator.ts";
import type { Entry } from "../http/entry.ts";
import { HerdlessError, isHerdlessError } from "../errors.ts";
import { keptSelectors, keyOrigin, selectsAlike, type SelectorSource } from "../http/key.ts";
import {
  notModifiedSharesCredentials,
  ownCredentialsRoute,
  storability,
  type Storability,
} from "../http/storability.ts";
import { blamesTheRequest } from "../http/request-blame.ts";
import { decideOnFailure } from "../http/decision.ts";
import { headerList } from "../http/http.ts";
import type { BufferedOriginResponse, OriginResponse } from "../origin/origin-client.ts";
import { clientInput } from "../origin/client-inputs.ts";
import { storeEntry, unlessUnavailable } from "./store-entry.ts";
import { guardedOriginCall, type GuardedCallDeps } from "../origin/guarded-call.ts";
import {
  conditionalHeaders,
  entryFromResponse,
  negativeEntry,
  withNotFoundTtl,
  notModifiedSelects,
  refreshedEntry,
  requesterFields,
  revalidatedHeaders,
  type EntryContext,
} from "../http/response-entry.ts";
import type { Store } from "../store/store.ts";
import { credentialsOf, forCredentials, shareBody, standsInWhenBusy, type FlightResult } from "./flight.ts";
import { buffered } from "./read-whole.ts";
import { errorBlameable, unlessConfirmed } from "./blame.ts";
import { bufferedUpTo } from "./body-wait.ts";
import { sharedBodyLimits } from "./laggards.ts";
import { fillBudgetBytes } from "../store/fill-budget.ts";

/** What settling an origin answer reads and writes: the key coordinator's own store. */
export interface SettleContext {
  config: Config;
  clock: Clock;
  store: Store;
  /** For one flight: where the selectors the URL's copies keep are read (lookup.ts `kept`); its answer keeps them too. */
  kept?: SelectorSource;
}

type Judge = (status: number, headers: [string, string][]) => Storability;

/**
 * What one origin answer becomes. Every stored entry comes from a response judged by
 * `storability` (RFC 9111 §3): a 200, a 5xx with explicit freshness, and the response a
 * 304 makes of the stored one (§4.3.4), so a 304 cannot slip a Set-Cookie, `private`,
 * `no-store` or `Vary: *` into what later clients get.
 */
export async function settle(
  ctx: SettleContext,
  request: FillRequest,
  stored: Entry | undefined,
  res: OriginResponse,
  token: number,
  credentials: string | undefined,
): Promise<FlightResult> {
  const { config, clock, kept } = ctx;
  const requestHeaders = headerList(request.headers);
  const authorized = requestHeaders.get("authorization") !== null;
  // RFC 9111 §3.5: a request's own Authorization on its own fill (credentialsOf): what it is answered is that client's.
  const ownCredentials = credentials !== undefined;
  const routed = routeFor(config, request.path);
  const route = ownCredentials ? ownCredentialsRoute(routed) : routed;
  const context = { primary: request.primary, url: request.url, requestHeaders, route, config, token };
  // A 304 has no body and an error's is only relayed to this flight's callers: read them whole.
  if (res.status === 304 || res.status >= 500)
    res = await buffered(res, config.cache.maxEntryBytes, fillBudgetBytes(config));
  const facts = { requestAt: res.requestAt, responseAt: res.responseAt, droppedFields: res.droppedFields };
  const judge: Judge = (status, headers) =>
    storability(
      "GET",
      authorized,
      requestHeaders.get("cookie") !== null,
      { status, headers: headerList(headers), ...facts },
      route,
    );
  if (res.status === 304 && stored && res.kind === "buffered" && notModifiedSelects(stored, res.headers))
    return settleNotModified(ctx, request, stored, res, judge, { ...context, ownCredentials });
  const verdict = judge(res.status, res.headers);
  // An answer about this fill's own request (blamesTheRequest) is passed on, the stored copy kept;
  // so is any error or redirect to a request's own Authorization (a 401 or a 302 to the login
  // page for a wrong token, `public` or not).
  const blameable = await errorBlameable(ctx, request, stored, res);
  const ownError = ownCredentials && res.status >= 300 && res.status !== 304;
  const aboutTheRequest = ownError || blamesTheRequest(res.status, request.headers, blameable, config);
  if (res.status >= 500) {
    const kept = verdict.storable && !aboutTheRequest && res.kind === "buffered" && !hidesError(ctx, stored);
    if (!kept) return settleError(ctx, request, stored, res, token, oneClients(verdict));
  }
  if (!verdict.storable || res.status === 304 || aboutTheRequest) {
    // The stored copy no longer reflects what the origin says about this URL.
    const keepsCopy = aboutTheRequest || !saysAboutTheUrl(verdict, ownCredentials);
    if (stored && res.status !== 304 && !keepsCopy) await unlessUnavailable(ctx.store.delete(stored.key), false);
    return {
      kind: "pass",
      response: { status: res.status, headers: res.headers, body: res.body, contentLength: res.contentLength },
      fwdStatus: res.status,
      reason: "uncacheable",
      ...(keepsCopy ? { keepsCopy } : {}),
      ...(aboutTheRequest ? { ownInput: true as const } : {}),
    };
  }
  const entryContext = { ...context, keptSelectors: kept ? keptSelectors(kept, clock.now()) : [] };
  const made = entryFromResponse(res.kind === "buffered" ? res : { ...res, body: new Uint8Array(0) }, entryContext);
  // herdless's own negative caching never keeps a 404 a client's own input may have caused.
  const ownInput = made.status === 404 && clientInput(request.headers, config) !== undefined;
  const timed = ownInput ? made : withNotFoundTtl(made, res.headers, config, clock.now());
  const entry = await unlessConfirmed(ctx, request, timed, blameable);
  const own = requesterFields(res.headers, config);
  if (res.kind === "buffered") return storeEntry(ctx.store, entry, request.primary, res.status, own);
  const flight = shareBody(entry, res, sharedBodyLimits(config));
  return own.length > 0 ? { ...flight, requesterFields: own } : flight;
}

/**
 * A flight's origin call under the key's lease (`token`; `signal` ends with the lease),
 * conditional when a copy of the same key is stored, and what its answer or failure becomes.
 */
export async function fetchAndSettle(
  ctx: SettleContext,
  deps: GuardedCallDeps,
  request: FillRequest,
  stored: Entry | undefined,
  { token, signal, kept }: { token: number; signal: AbortSignal; kept?: SelectorSource },
): Promise<FlightResult> {
  const conditional = request.key === stored?.key ? conditionalHeaders(stored) : [];
  // A background flight (a refresh behind a stale answer) runs for no client waiting now:
  // its interim answers would land after that client's answer, or on its next exchange.
  const onInterim = request.priority === "foreground" ? request.onInterim : undefined;
  // Every client of this fill asked the scheme and host its key names: the origin's links to itself point there.
  const publicOrigin = keyOrigin(request.primary);
  const ifFree = standsInWhenBusy(ctx.config, request, stored, ctx.clock.now());
  const { timeoutMs } = routeFor(ctx.config, request.path);
  const options = {
    priority: request.priority,
    timeoutMs,
    ...bufferedUpTo(ctx, stored),
    key: request.key,
    signal,
    ifFree,
  };
  const call = (validators: [string, string][]) =>
    guardedOriginCall(
      deps,
      { url: request.url, method: "GET", headers: [...request.headers, ...validators], onInterim },
      { ...options, publicOrigin },
    );
  let result = await call(conditional);
  // RFC 9111 §4.3.4: a 304 for another representation than the copy updates nothing: ask for the page itself.
  if (result.kind === "response" && result.response.status === 304 && stored && conditional.length > 0)
    if (!notModifiedSelects(stored, result.response.headers)) result = await call([]);
  if (result.kind !== "response") return failureResult(result.error, stored);
  const credentials = credentialsOf(ctx.config, request);
  const settled = await settle({ ...ctx, kept }, request, stored, result.response, token, credentials);
  return forCredentials(settled, credentials);
}

/** RFC 9111 §4.3.4: a 304 refreshes the stored response, which is judged again as a whole. */
async function settleNotModified(
  ctx: SettleContext,
  request: FillRequest,
  stored: Entry,
  res: BufferedOriginResponse,
  judge: Judge,
  context: EntryContext & { ownCredentials: boolean },
): Promise<FlightResult> {
  const merged = revalidatedHeaders(stored, res.headers);
  const refreshed = judge(stored.status, merged);
  // RFC 9111 §4.1: the copy was chosen by the headers its Vary named when it was stored. A 304
  // whose Vary names others vouches for it for this request's values only (§4.3.4): stored as
  // is, every other value of the new headers would be given this request's page.
  const sameSelection = selectsAlike(headerList(merged), stored.vary);
  const vouched = !context.ownCredentials || notModifiedSharesCredentials(res.headers);
  if (refreshed.storable && sameSelection && vouched) {
    const own = requesterFields(merged, ctx.config);
    return storeEntry(ctx.store, refreshedEntry(stored, res, context), request.primary, res.status, own);
  }
  // The origin now says this response must not be shared as stored: forget it, answer this client alone.
  // Not when it answered a request's own credentials: then it says so of that client's copy only.
  const forgets = !context.ownCredentials && (!sameSelection || saysAboutTheUrl(refreshed, false));
  if (forgets) await unlessUnavailable(ctx.store.delete(stored.key), false);
  return {
    kind: "pass",
    response: { status: stored.status, headers: merged, body: stored.body },
    fwdStatus: res.status,
    reason: "uncacheable",
    ...(forgets ? {} : { keepsCopy: true as const }),
  };
}

/** A 5xx that is not stored as the key's answer: a failure of this flight only. */
async function settleError(
  ctx: SettleContext,
  request: FillRequest,
  stored: Entry | undefined,
  res: OriginResponse,
  token: number,
  personal: boolean,
): Promise<FlightResult> {
  const { config, clock } = ctx;
  const body = res.kind === "buffered" ? res.body : new Uint8Array(0);
  if (res.kind === "streamed") await res.body?.cancel().catch(() => undefined);
  const response = { status: res.status, headers: res.headers, body };
  // herdless's own negative caching never keeps an error a client's own input may have caused.
  if (!stored && config.origin.errorTtlMs > 0 && !personal && clientInput(request.headers, config) === undefined) {
    const negative = negativeEntry(request.key, request.url, response, config.origin.errorTtlMs, clock.now(), token);
    // Over no copy, it may be this request's own: unconfirmed, as an error the origin gave a lifetime.
    await unlessUnavailable(ctx.store.put(await unlessConfirmed(ctx, request, negative, undefined)), false);
  }
  // RFC 9111 §4.2.2: without explicit freshness the error is no one else's: it goes to the
  // callers that waited on this fetch and to nobody after it (unless the operator opts in above).
  // One client's error answer goes to that client alone: the others get the failure.
  return {
    kind: "failed",
    code: "ORIGIN_STATUS",
    message: `origin answered ${res.status}`,
    fwdStatus: res.status,
    stale: stored,
    response,
    ...(personal ? { personal: true as const } : {}),
    collapsed: false,
  };
}

/**
 * Whether an answer storability refused is one client's, not merely unstorable for want of a
 * lifetime (`status`): `private`, `no-store`, a `Set-Cookie` or `Authentication-Info`, a Vary
 * on the client itself, a field whose meaning is unknown, or the answer to the request's own
 * credentials (RFC 9111 §3.5). A 2xx like that is passed to its client alone (`pass`); an
 * error like that must not reach the callers that waited on the same fetch either.
 */
function oneClients(verdict: Storability): boolean {
  return !verdict.storable && verdict.reason !== "status";
}

/** The failed flight an origin call's error becomes; anything unexpected counts as a network failure. */
export function failureResult(error: unknown, stale: Entry | undefined): FlightResult {
  if (isHerdlessError(error)) {
    return {
      kind: "failed",
      code: error.code,
      message: error.message,
      retryAfterMs: error.retryAfterMs,
      stale,
      collapsed: false,
    };
  }
  const wrapped = new HerdlessError("ORIGIN_NETWORK", String(error));
  return { kind: "failed", code: wrapped.code, message: wrapped.message, stale, collapsed: false };
}

/** RFC 5861 §4: a stored copy that may stand in for an error answer keeps doing so over a 5xx. */
function hidesError(ctx: SettleContext, stored: Entry | undefined): boolean {
  return decideOnFailure(stored, "ORIGIN_STATUS", ctx.config, ctx.clock.now()).kind === "stale-if-error";
}

/**
 * An unstorable answer replaces the stored copy, unless it is unstorable only because of who
 * asked (RFC 9111 §3.5: the answer to a request with credentials), which says nothing about
 * the copy others get. So with any answer to a request's own Authorization (`ownCredentials`):
 * a `private`, `no-store` or `Set-Cookie` page is what the origin shows that user, not what it
 * says of the URL; taken as the latter, every signed-in request evicted the copy every visitor
 * got (one origin request more each) and the stale-if-error copy that hid the next outage.
 */
function saysAboutTheUrl(verdict: Storability, ownCredentials: boolean): boolean {
  return verdict.storable || (verdict.reason !== "authorization" && !ownCredentials);
}
