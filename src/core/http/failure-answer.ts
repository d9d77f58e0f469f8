import type { CacheStatus } from "./cache-status.ts";
import type { Config } from "../config.ts";
import type { FillResult, PassResponse } from "../fill/coordinator.ts";
import { isHerdlessError, type HerdlessErrorCode } from "../errors.ts";
import { isGuardRefusal } from "../origin/guarded-call.ts";
import { fromPass, synthetic, type EngineResponse } from "./respond.ts";
import { TAG_HEADERS } from "./response-entry.ts";

/** The Cache-Status `detail` each failure code is shown as; any other failure is `origin-error`. */
export const FAILURE_DETAIL: Partial<Record<HerdlessErrorCode, NonNullable<CacheStatus["detail"]>>> = {
  BREAKER_OPEN: "breaker-open",
  QUEUE_FULL: "queue-full",
  QUEUE_TIMEOUT: "queue-timeout",
  ORIGIN_BACKOFF: "backoff",
  COORDINATOR_UNAVAILABLE: "coordinator-unavailable",
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
 * What a client gets when no stored copy may stand in for a failed fill: the origin's own
 * error answer when there is one, else 503 (refused by the guard, or no coordinator), 504
 * (origin timeout) or 502 (anything else the origin did).
 */
export function failureAnswer(
  result: Extract<FillResult, { kind: "failed" }>,
  status: CacheStatus,
  method: string,
  config: Config,
): EngineResponse {
  if (result.response) return fromPass(shown(result.response, config), status, method);
  if (isGuardRefusal(result.code)) return protectedAnswer(status.detail ?? "origin-error", status, result.retryAfterMs);
  const code = result.code === "ORIGIN_TIMEOUT" ? 504 : result.code === "COORDINATOR_UNAVAILABLE" ? 503 : 502;
  return synthetic(code, `origin failed: ${result.message}`, status, code === 503 ? 1_000 : undefined);
}

/**
 * A streamed answer whose body failed before any of it was sent: the client can still be
 * told plainly, as if the origin had failed before answering (504 for a stall, else 502),
 * instead of getting a connection closed with no answer at all.
 *
 * @example
 * if (!headSent) await write(res, unsentBodyFailure(error, response.cacheStatus));
 */
export function unsentBodyFailure(error: unknown, status: CacheStatus): EngineResponse {
  const timeout = isHerdlessError(error) && error.code === "ORIGIN_TIMEOUT";
  const message = error instanceof Error ? error.message : String(error);
  return synthetic(timeout ? 504 : 502, `origin failed: ${message}`, { ...status, detail: "origin-error" });
}

/** RFC 9110 §15.5.6: a method answered here and never forwarded. */
export function notAllowed(method: string): EngineResponse {
  const answer = synthetic(405, `${method} is not allowed through this cache`, {});
  answer.headers.push(["allow", "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE"]);
  return answer;
}
