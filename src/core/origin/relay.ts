import type { CacheStatus } from "../http/cache-status.ts";
import type { HerdlessErrorCode } from "../errors.ts";
import { routeFor, type Config } from "../config.ts";
import { FAILURE_DETAIL, originFailure, protectedAnswer, shown } from "../http/failure-answer.ts";
import { fromPass, synthetic, type EngineRequest, type EngineResponse } from "../http/respond.ts";
import { originRequestHeaders, originUrl, type ForwardPolicy } from "./forward.ts";
import {
  anySignal,
  guardedOriginCall,
  permitsWanted,
  type GuardedCallDeps,
  type GuardedCallResult,
} from "./guarded-call.ts";
import { realTimers } from "../guard/local-guard.ts";
import type { OriginResponse, SwitchedOriginResponse } from "./origin-client.ts";
import { declaredLength, readUpload } from "./upload.ts";

/**
 * What answers a relayed request instead of its failure, if anything (a stored copy
 * stale-if-error allows): asked with the failure's code when the origin gave no answer, and
 * with `ORIGIN_STATUS` for its 5xx.
 */
export type RelayFallback = (code: HerdlessErrorCode, fwdStatus?: number) => EngineResponse | undefined;

/**
 * Relays a request as it is, through the guard, streaming the answer. Nothing from it is
 * stored, so the client's own query and credentials go as they are. `heard` sees the
 * origin's answer (its head), if one came; `fallback` may answer a failure instead.
 */
export async function relay(
  deps: { config: Config; forward: ForwardPolicy; originDeps: GuardedCallDeps },
  request: EngineRequest,
  status: CacheStatus,
  heard?: (answer: OriginResponse) => void,
  fallback?: RelayFallback,
): Promise<EngineResponse> {
  // A body on GET or HEAD has no meaning (RFC 9110 §9.3.1) and is never sent on.
  const bodyless = request.method === "GET" || request.method === "HEAD";
  const url = originUrl(deps.config, request.url, request.url.search);
  const { originDeps } = deps;
  // Read before a permit is asked for (upload.ts): a slow client holds nothing of the origin's,
  // and one streamed past that is cut if it holds its permit back while others queue.
  const upload = await readUpload(bodyless ? null : request.body, {
    config: deps.config,
    timers: originDeps.timers ?? realTimers,
    contended: permitsWanted(originDeps.guard),
    url,
    // RFC 9112 §6.3: beside Transfer-Encoding, a Content-Length frames nothing (workerd keeps it).
    declaredBytes:
      request.headers.get("transfer-encoding") === null
        ? declaredLength(request.headers.get("content-length"))
        : undefined,
  });
  if (upload.kind === "broken")
    return synthetic(400, `bad request: ${upload.message}`, { ...status, detail: "refused" });
  const body = upload.body;
  const headers = originRequestHeaders(request.rawHeaders, deps.forward, {
    kind: "relay",
    credentials: true,
    url: request.url,
    clientAddress: request.clientAddress,
    body: body !== null,
    method: request.method,
  });
  const called = await guardedOriginCall(
    originDeps,
    { url, method: request.method, headers, body, onInterim: request.onInterim, oneClient: true },
    // The URL stands for the key (the breaker counts its path: breakerResource).
    {
      priority: "foreground",
      timeoutMs: routeFor(deps.config, request.url.pathname).timeoutMs,
      maxBodyBytes: 0,
      key: `${request.method} ${url}`,
      readByClient: true,
      publicOrigin: request.url.origin,
      // The client leaving, and a streamed upload failing or cut, each break the origin request off.
      ...withSignal(anySignal(request.signal, upload.kind === "streamed" ? upload.signal : undefined)),
      ...(upload.kind === "streamed" ? { uploadPending: upload.pending } : {}),
    },
  ).finally(upload.release);
  // A failure of a call whose upload herdless cut off is told as that cut, not as what the runtime saw of it.
  const cut = upload.kind === "streamed" && called.kind === "failed" ? upload.cutOff() : undefined;
  const result: typeof called = cut ? { kind: "failed", error: cut } : called;
  if (heard && result.kind === "response") heard(result.response);
  const instead = fallback && insteadOfFailure(result, fallback);
  return instead ?? relayAnswer(result, deps.config, status, request.method);
}

/** The fallback's answer for a failed call or an origin 5xx (whose body is then let go), if it has one. */
function insteadOfFailure(
  result: GuardedCallResult<OriginResponse | SwitchedOriginResponse>,
  fallback: RelayFallback,
): EngineResponse | undefined {
  if (result.kind !== "response") return fallback(result.error.code);
  const { response } = result;
  if (response.status < 500) return undefined;
  const instead = fallback("ORIGIN_STATUS", response.status);
  if (instead && response.kind === "streamed") void response.body?.cancel().catch(() => undefined);
  return instead;
}

/**
 * A relayed call's result as its client's answer: the origin's answer as it streams, a 503
 * with Retry-After when the guard refused (the breaker open, the queue full), else the failure
 * in herdless's words (502, 504). Every request relayed for one client alone is answered so.
 */
export function relayAnswer(
  result: GuardedCallResult<OriginResponse | SwitchedOriginResponse>,
  config: Config,
  status: CacheStatus,
  method: string,
): EngineResponse {
  if (result.kind === "response") {
    const fwdStatus = result.response.status;
    return fromPass(shown(result.response, config), { ...status, fwdStatus }, method);
  }
  const { error } = result;
  if (result.kind === "refused") {
    const detail = FAILURE_DETAIL[error.code] ?? "origin-error";
    return protectedAnswer(error.code, { ...status, detail }, error.retryAfterMs);
  }
  return originFailure(error.code, error.message, status);
}

function withSignal(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}
