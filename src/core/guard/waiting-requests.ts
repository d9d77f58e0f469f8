import { Places } from "../places.ts";
import type { FillResult } from "../fill/coordinator.ts";

/**
 * The requests one Node process holds waiting for an origin's answer,
 * against `origin.maxWaiting`: those collapsed onto another request's fill, those queued for
 * an origin permit or holding one, those relayed and not yet answered. Each costs heap
 * (~10 KB on Node: its socket, parser, request and the awaits it sits in), and nothing else
 * caps how many may wait on one slow cold page: without this, a few thousand clients asking
 * for it filled a bounded heap and the process exited, with every visitor's connection.
 * Past the bound a request is answered at once and never held (engine.ts `held`).
 *
 * @example
 * const waiting = new WaitingRequests(2_000);
 * const leave = waiting.take(); // undefined: full
 * leave?.(); // once the request has its answer
 */
export class WaitingRequests extends Places {
  constructor(readonly limit: number) {
    super(() => limit);
  }
}

/**
 * Runs `wait`, the part of a request that waits for an origin's answer, holding one of
 * `waiting`'s places until it settles; with none free, `refused(limit)` answers at once and
 * nothing is held. Without `waiting` (no bound) it only runs `wait`.
 *
 * @example
 * return held(o.waiting, () => relay(request), () => Promise.resolve(waitingFullAnswer(status)));
 */
export function held<T>(
  waiting: WaitingRequests | undefined,
  wait: () => Promise<T>,
  refused: (limit: number) => Promise<T>,
): Promise<T> {
  if (!waiting) return wait();
  const leave = waiting.take();
  if (!leave) return refused(waiting.limit);
  let waited: Promise<T>;
  try {
    waited = wait();
  } catch (error) {
    leave();
    throw error;
  }
  return waited.finally(leave);
}

/**
 * The fill a request gets when it may not wait: no origin answer reached it, so the stored
 * copy answers where breaker.serveStaleWhileOpen allows (decision.ts decideOnFailure), else
 * a `503` with Retry-After (failure-answer.ts).
 *
 * @example
 * return answerFill(ctx, request, waitingFull(waiting.limit), from);
 */
export function waitingFull(limit: number): Extract<FillResult, { kind: "failed" }> {
  return {
    kind: "failed",
    code: "WAITING_FULL",
    message: `${limit} requests already wait for an origin answer in this process (origin.maxWaiting)`,
    retryAfterMs: WAITING_FULL_RETRY_MS,
    collapsed: false,
  };
}

/** Long enough for a slow page's fill to end, short enough that a visitor's retry finds it stored. */
export const WAITING_FULL_RETRY_MS = 1_000;
