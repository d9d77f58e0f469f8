/** Stable codes for errors raised inside herdless; messages may change, codes do not. */
export type HerdlessErrorCode =
  | "CONFIG_INVALID"
  | "ENTRY_CORRUPT"
  | "ENTRY_VERSION"
  | "ORIGIN_TIMEOUT"
  | "ORIGIN_NETWORK"
  | "ORIGIN_TRUNCATED"
  | "ORIGIN_STATUS"
  /** The runtime would not send the request (a method or header it refuses); the origin saw nothing. */
  | "ORIGIN_UNSENDABLE"
  /** The key's origin calls failed recently; it is not asked again until its backoff passes. */
  | "ORIGIN_BACKOFF"
  | "QUEUE_FULL"
  | "QUEUE_TIMEOUT"
  /** No origin slot was free at once for a call that may not queue: a stored copy stands in (OriginGuard `ifFree`). */
  | "ORIGIN_BUSY"
  | "BREAKER_OPEN"
  /** The process (or isolate) holds `origin.maxWaiting` requests waiting already: this one was answered at once, not held. */
  | "WAITING_FULL"
  | "COORDINATOR_UNAVAILABLE"
  /** A purge was recorded, but not every process of the fleet was seen to hold it within the wait. */
  | "PURGE_UNCONFIRMED"
  | "LEASE_LOST"
  /** A client read a shared body so slowly that it held the other readers back; it was cut off. */
  | "CLIENT_TOO_SLOW"
  /** A live event stream reached `origin.streamTimeoutMs` or was silent for `streamIdleTimeoutMs`: herdless ended it, no failure of the origin's. */
  | "STREAM_CAPPED"
  /** An optional peer dependency (ioredis for the Redis fleet) is not installed. */
  | "DEPENDENCY_MISSING";

/**
 * An error with a stable code and an optional cause.
 *
 * @example
 * throw new HerdlessError("ORIGIN_TIMEOUT", "origin did not answer within 5000 ms");
 */
export class HerdlessError extends Error {
  override readonly name = "HerdlessError";
  /** For QUEUE_*, BREAKER_OPEN and ORIGIN_BACKOFF: when a client may usefully try again. */
  readonly retryAfterMs: number | undefined;
  constructor(
    readonly code: HerdlessErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfterMs = options?.retryAfterMs;
  }
}

export function isHerdlessError(error: unknown, code?: HerdlessErrorCode): error is HerdlessError {
  return error instanceof HerdlessError && (code === undefined || error.code === code);
}
