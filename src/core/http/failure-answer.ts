import type { CacheStatus } from "./cache-status.ts";
import type { Config } from "../config.ts";
import type { FillResult, PassResponse } from "../fill/coordinator.ts";
import { isHerdlessError, type HerdlessErrorCode } from "../errors.ts";
import { isGuardRefusal } from "../origin/guarded-call.ts";
import { fromPass, synthetic, type EngineResponse } from "./respond.ts";
import { climbsAboveRoot } from "./path-readings.ts";
import type { HeaderReader } from "./http.ts";
import { loopsBack } from "../origin/hops.ts";
import { TAG_HEADERS } from "./response-entry.ts";
import { WAITING_FULL_RETRY_MS } from "../guard/waiting-requests.ts";

/** The Cache-Status `detail` each failure code is shown as; any other failure is `origin-error`. */
export const FAILURE_DETAIL: Partial<Record<HerdlessErrorCode, NonNullable<CacheStatus["detail"]>>> = {
  BREAKER_OPEN: "breaker-open",
  QUEUE_FULL: "queue-full",
  QUEUE_TIMEOUT: "queue-timeout",
  ORIGIN_BUSY: "origin-busy",
  ORIGIN_BACKOFF: "backoff",
  COORDINATOR_UNAVAILABLE: "coordinator-unavailable",
  WAITING_FULL: "waiting-full",
  // The client's own request was too slow (an upload still arriving): nothing the origin did.
  CLIENT_TOO_SLOW: "refused",
};

/** An origin answer as clients see it: the purge-tag headers herdless consumes are not shown unless configured. */
export function shown(response: PassResponse, config: Config): PassResponse {
  if (config.cache.exposeTagHeaders) return response;
  return { ...response, headers: response.headers.filter(([name]) => !TAG_HEADERS.has(name)) };
}

/** The 503 the guard's refusal becomes: the origin is being protected, come back after Retry-After. */
export function protectedAnswer(reason: string, status: CacheStatus, retryAfterMs: number | undefined): EngineResponse {
  return synthetic(503, `origin is protected (${reason}); try again shortly`, status, retryAfterMs ?? 1_000);
}

/**
 * The 503 of a request that could not wait (`origin.maxWaiting` others already do, guard
 * waiting-requests.ts): it says why, and when to come back.
 *
 * @example
 * if (!leave) return waitingFullAnswer({ fwd: "bypass", detail: "waiting-full" });
 */
export function waitingFullAnswer(status: CacheStatus): EngineResponse {
  const told = "too many requests are waiting for the origin here (origin.maxWaiting); try again shortly";
  return synthetic(503, told, { ...status, detail: "waiting-full" }, WAITING_FULL_RETRY_MS);
}

/**
 * What a client gets when no stored copy may stand in for a failed fill: the origin's own
 * error answer when there is one (its status alone when that answer was another client's),
 * else 503 (refused by the guard, or no coordinator), 504 (origin timeout) or 502 (anything
 * else the origin did). `mustRevalidate`: a copy is stored that the origin forbade serving
 * without validation (must-revalidate and kin, freshness.ts forbidsStale); with no origin
 * to reach, RFC 9111 §5.2.2.2's error is a 504, as for a timeout.
 */
export function failureAnswer(
  result: Extract<FillResult, { kind: "failed" }>,
  status: CacheStatus,
  method: string,
  config: Config,
  mustRevalidate = false,
): EngineResponse {
  if (result.response) return fromPass(shown(result.response, config), status, method);
  if (result.code === "WAITING_FULL") return waitingFullAnswer(status);
  if (isGuardRefusal(result.code)) return protectedAnswer(status.detail ?? "origin-error", status, result.retryAfterMs);
  // The origin's error answer was another client's (joinedFailure): its status, in herdless's words.
  if (result.code === "ORIGIN_STATUS" && result.fwdStatus !== undefined && result.fwdStatus >= 500)
    return synthetic(result.fwdStatus, `origin failed: ${withoutAddresses(result.message)}`, status);
  return unanswered(result.code, result.message, status, mustRevalidate);
}

/**
 * A failure with no origin answer to show: 504 for an origin that stalled, or could not be
 * reached to validate a copy the origin forbade serving stale (`disconnected`, RFC 9111
 * §5.2.2.2: "SHOULD be 504"), 503 with a Retry-After when herdless's own coordination (a
 * key's object, Redis) went away (the origin may be fine: come back shortly), 408 when the
 * client's upload was still arriving (RFC 9110 §15.5.9), else 502.
 */
function unanswered(
  code: HerdlessErrorCode | undefined,
  message: string,
  status: CacheStatus,
  disconnected = false,
): EngineResponse {
  const told = withoutAddresses(message);
  if (code === "CLIENT_TOO_SLOW") return synthetic(408, `request timeout: ${told}`, status);
  const stalled = code === "ORIGIN_TIMEOUT" || (disconnected && code === "ORIGIN_NETWORK");
  const answer = stalled ? 504 : code === "COORDINATOR_UNAVAILABLE" ? 503 : 502;
  return synthetic(answer, `origin failed: ${told}`, status, answer === 503 ? 1_000 : undefined);
}

/** The scheme and authority of an absolute URL (`http://user:pw@10.0.0.5:8080`), whatever it names. */
const URL_AUTHORITY = /\bhttps?:\/\/[^\s/?#]+/gi;
/** A system call's error and the address it names (`connect ECONNREFUSED 10.0.0.5:8080`, `getaddrinfo ENOTFOUND db.internal`). */
const SYSCALL_ADDRESS = /\b([a-z]+ E[A-Z0-9_]{2,}) [^\s)]+/g;

/**
 * A failure's message as any client may read it: the fault and the path named, the origin's
 * address not. Messages name the origin URL they called (`origin answered
 * http://10.0.0.5:8080/p with status 600`) and the address a connection failed on, and a
 * client that can make the origin fail (a path it answers badly, a header it stalls on)
 * learned where the origin listens: the address to reach it around the cache, its cap and
 * its breaker. The operator knows where the origin is; the fault and the path are what tell
 * them which call failed.
 *
 * @example
 * withoutAddresses("origin unreachable for http://10.0.0.5/p: connect ECONNREFUSED 10.0.0.5:80"); // "origin unreachable for /p: connect ECONNREFUSED"
 */
export function withoutAddresses(message: string): string {
  return message.replace(URL_AUTHORITY, "").replace(SYSCALL_ADDRESS, "$1");
}

/**
 * A streamed answer whose body failed before any of it was sent: the client can still be
 * told plainly, as if the fill had failed before answering ({@link failureAnswer}'s statuses:
 * 504 for a stall, 503 when a fleet's Redis went away mid-relay, else 502), instead of
 * getting a connection closed with no answer at all.
 *
 * @example
 * if (!headSent) await write(res, unsentBodyFailure(error, response.cacheStatus));
 */
export function unsentBodyFailure(error: unknown, status: CacheStatus): EngineResponse {
  return originFailure(
    isHerdlessError(error) ? error.code : undefined,
    error instanceof Error ? error.message : String(error),
    status,
  );
}

/**
 * An origin call that failed with no answer to show, its Cache-Status detail taken from the
 * failure's code: the relay's failures and a streamed body's unsent failure are told apart
 * from a fill's in nothing but where they happened.
 */
export function originFailure(
  code: HerdlessErrorCode | undefined,
  message: string,
  status: CacheStatus,
): EngineResponse {
  const detail = (code && FAILURE_DETAIL[code]) ?? "origin-error";
  return unanswered(code, message, { ...status, detail });
}

/** The methods herdless passes on (TRACE and TRACK it answers itself). */
const ALLOWED = "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE";

/** Methods answered here and never forwarded: TRACE (RFC 9110 §9.3.8: it would reflect the request, credentials included) and its Microsoft twin TRACK. */
const LOCAL_ONLY_METHODS = new Set(["TRACE", "TRACK"]);

/**
 * The answer herdless gives before anything else looks at a request, if any: TRACE and TRACK
 * are never forwarded ({@link notAllowed}), a request carrying this deployment's own
 * `CDN-Loop` entry is one of its origin requests come back ({@link loopDetected}), and a path
 * an origin may read as climbing above its root is refused ({@link climbsAboveRoot}).
 *
 * @example
 * const here = answeredHere(request, policy.loopEntry);
 * if (here) return here;
 */
export function answeredHere(
  request: { method: string; headers: HeaderReader; url: URL },
  loopEntry: string,
): EngineResponse | undefined {
  if (LOCAL_ONLY_METHODS.has(request.method)) return notAllowed(request.method);
  if (loopsBack(request.headers, loopEntry)) return loopDetected();
  if (climbsAboveRoot(request.url.pathname)) return climbing(request.url.pathname);
  return undefined;
}

/**
 * 400 for a path that climbs above the root once an origin decodes it (`/..%2fadmin`,
 * `/..;/admin`, `/%252e%252e/admin`): behind an `origin.url` with a path prefix the origin
 * resolves it out of that prefix (`http://backend/app/..%2fadmin` is the backend's `/admin`),
 * and its answer would be stored under the URL. No page's URL climbs so.
 */
function climbing(pathname: string): EngineResponse {
  const shown = JSON.stringify(pathname.slice(0, 200));
  return synthetic(
    400,
    `bad request: the path ${shown} climbs above the root once decoded (%2F, %5C, ..;, double encoding)`,
    { detail: "refused" },
  );
}

/** RFC 9110 §15.5.6: a method answered here and never forwarded. */
export function notAllowed(method: string): EngineResponse {
  const answer = synthetic(405, `${method} is not allowed through this cache`, {});
  answer.headers.push(["allow", ALLOWED]);
  return answer;
}

/**
 * 508 Loop Detected (RFC 5842 §7.2, as CDNs answer a `CDN-Loop` of their own): the request is
 * one of this deployment's origin requests come back, because `origin.url` leads to herdless
 * itself. Named, answered at once, never forwarded; the request that sent it gets this 508 as
 * its origin's answer, which is not stored and is not an origin failure.
 */
export function loopDetected(): EngineResponse {
  // origin.url is not named: a client that learned the deployment's CDN-Loop entry (from an
  // origin that reflects request headers) could send it to read the origin's address.
  return synthetic(
    508,
    "request loop: herdless's origin (origin.url) sent this request back to herdless (CDN-Loop); point origin.url at the origin server, not at the cache",
    { detail: "refused" },
  );
}

/**
 * RFC 9110 §7.6.2, §9.3.7: an OPTIONS whose Max-Forwards reached 0 is answered by this
 * recipient, with what it passes on, and never reaches the origin.
 */
export function optionsHere(): EngineResponse {
  const answer = synthetic(200, "Max-Forwards reached 0 at this cache: answered here, not forwarded", {});
  answer.headers.push(["allow", ALLOWED]);
  return answer;
}

/**
 * RFC 9112 §3.2.4, RFC 9110 §9.3.7: `OPTIONS *` (asterisk-form) asks about the server as a
 * whole, which to its clients is herdless: answered here with the methods it passes on,
 * never a 400 and never an origin request.
 *
 * @example
 * if (method === "OPTIONS" && target === "*") return optionsForServer();
 */
export function optionsForServer(): EngineResponse {
  const answer = synthetic(200, "OPTIONS * is answered by this cache: see Allow", {});
  answer.headers.push(["allow", ALLOWED]);
  return answer;
}
