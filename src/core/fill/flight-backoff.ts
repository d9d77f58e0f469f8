import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { Entry } from "../http/entry.ts";
import type { HerdlessError, HerdlessErrorCode } from "../errors.ts";
import type { BackoffCheck, BackoffRecord, KeyBackoff, Sickness } from "../guard/key-backoff.ts";
import type { OriginOutcome } from "../guard/origin-guard.ts";
import { clientInput, type OrdinaryHeadersConfig } from "../origin/client-inputs.ts";
import { CREDENTIALS } from "../origin/forward.ts";
import { outcomeOfError, outcomeOfStatus } from "../origin/guarded-call.ts";
import type { FillRequest, FillResult } from "./coordinator.ts";
import { standsInWhenBusy, type FlightResult } from "./flight.ts";
import { fieldsDigest } from "../http/asked-by.ts";

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
function outcomeForKey(outcome: OriginOutcome, request: FillRequest, config: Config): OriginOutcome {
  return outcome === "failure" && clientInput(request.headers, config) !== undefined ? "neutral" : outcome;
}

/**
 * Records in the key's backoff what the flight's call said about the origin, as the call of
 * `request` (asked-by.ts fieldsDigest of its fields); a failure that started the key's
 * backoff says so (`backoffStarted`, for the counters). The answer stands even if its record
 * is lost (the store unreachable): the key just retries sooner.
 */
export async function recordFlight(
  backoff: KeyBackoff,
  request: FillRequest,
  result: FlightResult,
  config: Config,
  previous: BackoffRecord | undefined,
): Promise<FlightResult> {
  const outcome = outcomeForKey(outcomeOfFlight(result, config), request, config);
  // The origin's error status to this request is this request's until another's confirms it
  // (FillResult `askedBy`): unless this flight is that other request's (`confirming`).
  const unconfirmed = result.kind === "failed" && result.code === "ORIGIN_STATUS" && request.confirming !== true;
  // Hashed only for a failure: an answer that proves the origin up, the usual fill, needs none.
  const digest = outcome === "failure" || unconfirmed ? await fieldsDigest(request.headers) : undefined;
  const started = await backoff
    .record(request.key, outcome, previous, sicknessOfFlight(result), digest)
    .catch(() => false);
  if (result.kind !== "failed") return result;
  // Credentials are left out: a fill that carried them answers its requester by design (RFC
  // 9111 §3.5), and its joiners take its failure in herdless's words (joinedFailure).
  const uncredentialed = request.headers.filter(([name]) => !CREDENTIALS.has(name.toLowerCase()));
  const ownInput = ORIGIN_CALL_FAILURES.has(result.code) && clientInput(uncredentialed, config) !== undefined;
  return {
    ...result,
    ...(started ? { backoffStarted: true } : {}),
    ...(ownInput ? { ownInput: true as const } : {}),
    ...(unconfirmed && digest !== undefined ? { askedBy: digest } : {}),
  };
}

/** Failures of an origin call that was made: what the origin did with the request (not a guard's refusal). */
const ORIGIN_CALL_FAILURES = new Set<HerdlessErrorCode>([
  "ORIGIN_STATUS",
  "ORIGIN_TIMEOUT",
  "ORIGIN_NETWORK",
  "ORIGIN_TRUNCATED",
]);

/**
 * The flight's answer while the key backs off for this caller, if it does: a caller whose
 * stored copy stands in on a failure (stale-if-error, as for a busy origin: standsInWhenBusy)
 * waits the longer `held` (KeyBackoff.check). A backoff whose sick calls all came from one
 * request (BackoffRecord `askedBy`) holds back only requests like it, and its refusal is
 * theirs alone (FillResult `askedBy`): the origin may have failed on that request's own
 * header values. Before, one attacker's two requests with a value the gateway answers `502`
 * to (or one the origin stalls on) backed a cold page off for everyone: `503 detail=backoff`
 * for every visitor without their request reaching the origin, for up to `backoffMaxMs`
 * while the attacker kept it up. Another request asks; if the origin fails it too, the run
 * is confirmed and the key backs off for all, as a down origin needs.
 */
export async function backoffAnswer(
  checked: BackoffCheck,
  { config, clock }: { config: Config; clock: Clock },
  request: FillRequest,
  stored: Entry | undefined,
): Promise<FlightResult | undefined> {
  const refusal = standsInWhenBusy(config, request, stored, clock.now()) ? checked.held : checked.refusal;
  if (!refusal) return undefined;
  const askedBy = checked.record?.askedBy;
  if (askedBy === undefined) return backedOff(refusal, stored);
  if (askedBy !== (await fieldsDigest(request.headers))) return undefined;
  return { ...backedOff(refusal, stored), askedBy };
}

/** The flight's answer while the key backs off: its stored copy (if any) stands in, as for a refused permit. */
export function backedOff(refusal: HerdlessError, stale: Entry | undefined): Extract<FlightResult, { kind: "failed" }> {
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
export async function backoffAfterStream(
  backoff: KeyBackoff,
  request: FillRequest,
  message: string,
  config: Config,
): Promise<void> {
  if (!message.startsWith("failed:")) return;
  const code = message.slice("failed:".length) as HerdlessErrorCode;
  const outcome = outcomeForKey(outcomeOfError(code, false), request, config);
  if (outcome === "neutral") return;
  try {
    const [{ record }, digest] = await Promise.all([backoff.check(request.key), fieldsDigest(request.headers)]);
    await backoff.record(request.key, outcome, record, "no-answer", digest);
  } catch {
    // The store is unreachable: the key retries sooner, nothing worse.
  }
}

/**
 * Whether a caller that joined a failed flight should ask again rather than take its failure:
 * the flight failed on its leader's own input (`ownInput`: an attacker's header the origin
 * stalls or fails on) and this caller sent none. Without this, the requests collapsed onto
 * such flights, one after another, all got the attacker's 504 (or 503): the page down for
 * everyone while the attacker kept asking. So with an answer about the leader's own request
 * (a `pass` with `ownInput`: the origin's 404 to an attacker's `X-Api-Version`), which each
 * joiner relayed alone, an origin request per visitor at the page's expiry. Used by every
 * collapse: the key's coordinator and the Worker's isolate.
 */
export function notTheJoinersFailure(
  result: Extract<FillResult, { kind: "failed" | "pass" }>,
  request: FillRequest,
  config: OrdinaryHeadersConfig,
): boolean {
  return result.ownInput === true && clientInput(request.headers, config) === undefined;
}
