import { HerdlessError, isHerdlessError } from "../errors.ts";

/**
 * What a failed origin call is, as a stable code: the runtime's error, the call's `deadline`
 * (timed out, or cancelled), and `status`: the head's, when its body failed.
 */
export function asOriginError(cause: unknown, deadline: AbortSignal, url: string, status?: number): HerdlessError {
  if (cause instanceof HerdlessError) return cause;
  if (deadline.aborted && deadline.reason instanceof HerdlessError) return deadline.reason;
  if (deadline.aborted)
    return new HerdlessError("ORIGIN_NETWORK", `origin request for ${url} was cancelled`, { cause: deadline.reason });
  // The origin refused the request (`431`, `414`) and closed while it still arrived: the reset
  // lost the rest. An answer, not sickness (as truncation, junk headers opened the breaker).
  if (status !== undefined && status >= 400 && status < 500)
    return new HerdlessError("ORIGIN_STATUS", `origin refused ${url} with ${status}, then reset its answer`, { cause });
  if (status !== undefined)
    return new HerdlessError("ORIGIN_TRUNCATED", `origin body for ${url} ended early`, { cause });
  if (isUnsendable(cause))
    return new HerdlessError(
      "ORIGIN_UNSENDABLE",
      `the runtime would not send the request for ${url}: ${describe(cause)}`,
      { cause },
    );
  return new HerdlessError("ORIGIN_NETWORK", `origin unreachable for ${url}: ${describe(cause)}`, { cause });
}

/**
 * A request the runtime refused before any connection: a TypeError of its own (undici:
 * "'TRACE' HTTP method is unsupported", workerd: "Invalid header name."), or undici's
 * refusal of an option ("expect header not supported"). Network failures are an Error in
 * workerd and a TypeError with a socket cause in undici, so they stay ORIGIN_NETWORK.
 */
function isUnsendable(cause: unknown): boolean {
  if (!(cause instanceof TypeError)) return false;
  if (cause.cause === undefined) return true;
  const code = (cause.cause as { code?: unknown } | null)?.code;
  return code === "UND_ERR_NOT_SUPPORTED" || code === "UND_ERR_INVALID_ARG";
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? ` (${error.cause.message})` : "";
    return `${error.message}${cause}`;
  }
  return String(error);
}

/** What a runtime's body error means to whoever reads the body: the origin broke its answer off. */
export function brokenOff(error: unknown, url: string): HerdlessError {
  if (isHerdlessError(error)) return error;
  return new HerdlessError("ORIGIN_TRUNCATED", `origin body for ${url} ended early`, { cause: error });
}

/** A live event stream herdless ended at one of its caps. */
export function capped(url: string, how: string): HerdlessError {
  return new HerdlessError("STREAM_CAPPED", `event stream ${url} ${how}: herdless ended it`);
}

/** An origin body past `origin.streamTimeoutMs` or `streamIdleTimeoutMs`. */
export function tooSlow(url: string, how: string): HerdlessError {
  return new HerdlessError("ORIGIN_TIMEOUT", `origin body for ${url} ${how}`);
}

/** The error a lost permit stops a streamed body with (not the origin's doing: the breaker does not count it). */
export function lostPermit(reason: unknown, url: string): HerdlessError {
  if (isHerdlessError(reason)) return reason;
  return new HerdlessError("COORDINATOR_UNAVAILABLE", `origin permit lost while streaming ${url}`, { cause: reason });
}
