import type { Config } from "../config.ts";
import type { Entry } from "../http/entry.ts";
import type { HerdlessError, HerdlessErrorCode } from "../errors.ts";
import type { BackoffRecord, KeyBackoff, Sickness } from "../guard/key-backoff.ts";
import type { OriginOutcome } from "../guard/origin-guard.ts";
import { clientInput } from "../origin/client-inputs.ts";
import { outcomeOfError, outcomeOfStatus } from "../origin/guarded-call.ts";
import type { FillRequest } from "./coordinator.ts";
import type { FlightResult } from "./flight.ts";

/**
 * What a flight's result says about the origin, for the key's backoff: the breaker's own
 * judgement of the call (guarded-call.ts), so the two never disagree on what is sick. An
 * answer is judged by its status; a failure without one by its code; a result that made no
 * origin call (a guard refusal, a lease that stayed busy, an entry someone else stored)
 * says nothing.
 *
 * @example
 * await backoff.record(key, outcomeOfFlight(result, config), checked.record);
 */
function outcomeOfFlight(result: FlightResult, config: Config): OriginOutcome {
  if (result.kind === "failed") {
    if (result.code === "ORIGIN_STATUS")
      return result.fwdStatus === undefined ? "neutral" : outcomeOfStatus(result.fwdStatus, config);
    // Cancelled calls (lease lost, client gone) end in codes outcomeOfError already holds neutral.
    return outcomeOfError(result.code, false);
  }
  if (result.kind === "alone" || result.fwdStatus === undefined) return "neutral";
  return outcomeOfStatus(result.fwdStatus, config);
}

/** Whether a sick flight got a status from the origin or no answer at all: the first sick status is retried at once. */
function sicknessOfFlight(result: FlightResult): Sickness {
  return result.kind !== "alone" && result.fwdStatus !== undefined ? "status" : "no-answer";
}

/**
 * What a call's outcome says about the key for everyone: a sick answer to a request that
 * carried an input of its client's own (clientInput: a header no ordinary visitor sends,
 * unusually large headers) says nothing, since the origin may have failed on that input and
 * not on the URL. Without this, an attacker whose header made the origin answer 503 (or stall
 * until the timeout) backed a victim's cold page off for up to `breaker.backoffMaxMs`: a
 * `503 detail=backoff` for every visitor. Visitors' ordinary requests still start the backoff
 * in a real failure, and the breaker still counts every sick call.
 */
function outcomeForKey(outcome: OriginOutcome, request: FillRequest): OriginOutcome {
  return outcome === "failure" && clientInput(request.headers) !== undefined ? "neutral" : outcome;
}

/**
 * Records in the key's backoff what the flight's call said about the origin; a failure that
 * started the key's backoff says so (`backoffStarted`, for the counters). The answer stands
 * even if its record is lost (the store unreachable): the key just retries sooner.
 */
export async function recordFlight(
  backoff: KeyBackoff,
  request: FillRequest,
  result: FlightResult,
  config: Config,
  previous: BackoffRecord | undefined,
): Promise<FlightResult> {
  const outcome = outcomeForKey(outcomeOfFlight(result, config), request);
  const started = await backoff.record(request.key, outcome, previous, sicknessOfFlight(result)).catch(() => false);
  return started && result.kind === "failed" ? { ...result, backoffStarted: true } : result;
}

/** The flight's answer while the key backs off: its stored copy (if any) stands in, as for a refused permit. */
export function backedOff(refusal: HerdlessError, stale: Entry | undefined): FlightResult {
  return {
    kind: "failed",
    code: refusal.code,
    message: refusal.message,
    ...(refusal.retryAfterMs !== undefined ? { retryAfterMs: refusal.retryAfterMs } : {}),
    stale,
    collapsed: false,
  };
}

/**
 * A streamed body that failed after its head (`failed:<code>`, the flight's announcement) was
 * a sick call too: the key backs off. Best effort: the flight has ended whatever happens here.
 */
export async function backoffAfterStream(backoff: KeyBackoff, request: FillRequest, message: string): Promise<void> {
  if (!message.startsWith("failed:")) return;
  const code = message.slice("failed:".length) as HerdlessErrorCode;
  const outcome = outcomeForKey(outcomeOfError(code, false), request);
  if (outcome === "neutral") return;
  try {
    await backoff.record(request.key, outcome, (await backoff.check(request.key)).record);
  } catch {
    // The store is unreachable: the key retries sooner, nothing worse.
  }
}
