import type { OriginOutcomeKind } from "../admin/metrics.ts";
import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import { HerdlessError, isHerdlessError, type HerdlessErrorCode } from "../errors.ts";
import { realTimers, type Timers } from "../guard/local-guard.ts";
import type { OriginGuard, OriginOutcome, OriginPermit, Priority } from "../guard/origin-guard.ts";
import { fetchOrigin } from "./origin-client.ts";
import type { AnswerTo, FetchLike, OriginRequest, OriginResponse, SwitchedOriginResponse } from "./origin-client.ts";
import { heldShape, type ContentDecoding } from "./response-fields.ts";
import { cutWhenUnread } from "./client-idle.ts";
import { holdUntilDone } from "./held-body.ts";
import { breakerResource } from "../guard/breaker-resource.ts";
import { clientInput } from "./client-inputs.ts";
import { ownLinksRewritten } from "./own-links.ts";
import { fillBudgetBytes } from "../store/fill-budget.ts";

/** One origin call as metrics see it. */
export interface OriginCallEvent {
  /** The cache key the call fills; absent for relayed requests (bypass, unsafe methods). */
  key?: string;
  outcome: OriginOutcomeKind;
  status?: number;
  /** Why a call with outcome `error` got no answer (refused, reset, timed out), for the logs. */
  error?: string;
  priority: Priority;
}

/**
 * A failed origin call (no answer, or a 5xx) as the warn line every runtime logs, naming the
 * key and why; undefined for a call that was answered. One line per call the guard let
 * through, so an outage logs a few per probe interval, not one per request.
 */
export function failedCallLine(event: OriginCallEvent): { msg: string; fields: Record<string, unknown> } | undefined {
  const key = event.key !== undefined ? { key: event.key } : {};
  if (event.outcome === "error")
    return { msg: "origin call failed", fields: { ...key, error: event.error ?? "unknown" } };
  if (event.outcome === "5xx") return { msg: "origin answered an error", fields: { ...key, status: event.status } };
  return undefined;
}

/** What a guarded origin call needs from its runtime. */
export interface GuardedCallDeps {
  config: Config;
  clock: Clock;
  guard: OriginGuard;
  fetch: FetchLike;
  /** The runtime's content decoding (see origin-client.ts); default: the fetch standard's. */
  decodes?: ContentDecoding;
  timers?: Timers;
  /** Hears each call that reached the origin (not the ones the guard refused). */
  onOriginCall?: (event: OriginCallEvent) => void;
}

/**
 * The dependencies of a guarded call, taken from the options of whoever makes it (the
 * engine's relay, the key coordinator's fill), so both hand the same ones over.
 *
 * @example
 * const deps = guardedCallDeps(options, (event) => metrics.originCall(event.outcome));
 */
export function guardedCallDeps(
  from: Pick<GuardedCallDeps, "config" | "clock" | "guard" | "fetch" | "decodes">,
  onOriginCall?: GuardedCallDeps["onOriginCall"],
): GuardedCallDeps {
  return {
    config: from.config,
    clock: from.clock,
    guard: from.guard,
    fetch: from.fetch,
    ...(from.decodes ? { decodes: from.decodes } : {}),
    ...(onOriginCall ? { onOriginCall } : {}),
  };
}

export interface GuardedCallOptions {
  priority: Priority;
  /** The deadline for the call's answer: its route's (`routeFor(...).timeoutMs`); a call past it is a sick one. */
  timeoutMs: number;
  /** Bodies above this stream (their permit is held until the stream ends); 0 streams every body. */
  maxBodyBytes: number;
  /** A body that pauses this long once part of it is in streams from there (origin-client.ts). */
  pauseMs?: number;
  key?: string;
  /** Refused ORIGIN_BUSY rather than queued when no permit is free at once (OriginGuard.acquire). */
  ifFree?: boolean;
  /** Cancels the wait for a permit and the call (the caller's lease ended, the client left). */
  signal?: AbortSignal;
  /**
   * The streamed body goes straight to one client (a relay): one that takes nothing for
   * `origin.streamIdleTimeoutMs` is cut off. A shared fill's readers are watched by its SharedBody.
   */
  readByClient?: boolean;
  /**
   * True while the client is still sending the request body (a streamed upload): a call that
   * fails meanwhile waited on the client, says nothing about the origin: CLIENT_TOO_SLOW.
   */
  uploadPending?: () => boolean;
  /** The scheme and host the client asked (`https://shop.test`): where the origin's links to itself point (own-links.ts). */
  publicOrigin?: string | undefined;
}

/**
 * How a guarded call ended:
 * - `response`: the origin answered (any status); a streamed body holds the permit until it ends;
 * - `refused`: the guard refused a permit (see {@link isGuardRefusal}); the origin saw nothing;
 * - `failed`: the call was made and failed (timeout, reset, refused connection, unsendable request).
 */
export type GuardedCallResult<A = OriginResponse> =
  | { kind: "response"; response: A }
  | { kind: "refused"; error: HerdlessError }
  | { kind: "failed"; error: HerdlessError };

/** The one resource the breaker counts every sick call of a request with its client's own input as. */
const CLIENT_INPUT_RESOURCE = "client input";

/** The guard's answers that mean "not now" (the origin saw nothing): one list for every runtime. */
export const GUARD_REFUSALS = ["QUEUE_FULL", "QUEUE_TIMEOUT", "ORIGIN_BUSY", "BREAKER_OPEN", "ORIGIN_BACKOFF"] as const;
export type GuardRefusal = (typeof GUARD_REFUSALS)[number];

export function isGuardRefusal(code: string): code is GuardRefusal {
  return (GUARD_REFUSALS as readonly string[]).includes(code);
}

/**
 * Whether herdless itself said "not now" (the origin saw nothing of the request): the guard
 * refused it, or the process held `origin.maxWaiting` waiting requests already (WAITING_FULL).
 */
export function refusedHere(code: string): boolean {
  return code === "WAITING_FULL" || isGuardRefusal(code);
}

/**
 * What an origin answer says about the origin's health, for the breaker: a status in
 * `breaker.failureStatuses` (502/503/504 by default) is a sign of sickness; every other
 * answer (2xx–4xx, 500, 501: the application speaking, a 101 a tunnel asked for) proves the
 * origin is up. Any other answer outside 200–599 says nothing (a runtime's mishandling).
 */
export function outcomeOfStatus(status: number, config: Config): OriginOutcome {
  if (status === 101) return "success";
  if (status < 200 || status > 599) return "neutral";
  return config.breaker.failureStatuses.includes(status) ? "failure" : "success";
}

/**
 * What a failed call says about the origin: timeouts, refused or reset connections and
 * bodies cut short are sickness; a request the runtime would not send (TRACE, an Expect
 * header, a bad header name) or that our own side cancelled (client gone, lease ended)
 * says nothing about the origin and is not counted.
 */
export function outcomeOfError(code: HerdlessErrorCode, cancelled: boolean): OriginOutcome {
  if (cancelled || code === "ORIGIN_UNSENDABLE") return "neutral";
  // It answered, however oddly (a status no client can be given): not an unwell origin.
  if (code === "ORIGIN_STATUS") return "success";
  return isOriginCallError(code) ? "failure" : "neutral";
}

/** Errors of a call that was made (the metrics count it as an origin call that ended in "error"). */
export function isOriginCallError(code: HerdlessErrorCode): boolean {
  return (
    code === "ORIGIN_TIMEOUT" ||
    code === "ORIGIN_NETWORK" ||
    code === "ORIGIN_TRUNCATED" ||
    code === "ORIGIN_UNSENDABLE"
  );
}

/** The metrics label of an origin answer. */
export function metricOfStatus(status: number): OriginOutcomeKind {
  if (status === 200) return "200";
  if (status === 304) return "304";
  if (status >= 500) return "5xx";
  return "other";
}

/**
 * The one way herdless calls its origin: a permit from the guard, the call with its
 * deadline, the permit released with what the call says about the origin's health, and
 * the call counted. A streamed body keeps the permit until it ends, fails or is cancelled,
 * and is itself bounded by `origin.streamIdleTimeoutMs` and `origin.streamTimeoutMs`, so
 * the cap bounds open origin connections, not just response heads. A switched connection (a
 * WebSocket tunnel, which may stay open for hours) gives it back once its 101 arrived.
 *
 * @example
 * const result = await guardedOriginCall(deps, { url, method: "GET", headers: [] }, { priority: "foreground", timeoutMs: 10_000, maxBodyBytes: 1e6 });
 * if (result.kind === "response") use(result.response);
 */
export async function guardedOriginCall<R extends OriginRequest>(
  deps: GuardedCallDeps,
  request: R,
  options: GuardedCallOptions,
): Promise<GuardedCallResult<AnswerTo<R>>> {
  const { config } = deps;
  let permit: OriginPermit;
  try {
    permit = await deps.guard.acquire(options.priority, options.signal, options.ifFree === true);
  } catch (error) {
    if (isHerdlessError(error)) return { kind: "refused", error };
    // An abort while queued, or a guard that broke: the origin saw nothing.
    const message = error instanceof Error ? error.message : String(error);
    return {
      kind: "refused",
      error: new HerdlessError("COORDINATOR_UNAVAILABLE", `no origin permit: ${message}`, { cause: error }),
    };
  }
  const breakerKey = breakerResource(request.url);
  // A sick answer (or a timeout) to a request that carried its client's own input may be the
  // origin failing on that input: every such call counts as one resource, so a header the
  // application chokes on cannot open the breaker on `minFailingKeys` paths of the sender's
  // choosing; visitors' ordinary requests, and refused or reset connections, count by path.
  const sickKey = clientInput(request.headers, config) === undefined ? breakerKey : CLIENT_INPUT_RESOURCE;
  const event = (outcome: OriginOutcomeKind, status?: number, error?: string): OriginCallEvent => ({
    ...(options.key !== undefined ? { key: options.key } : {}),
    outcome,
    ...(status !== undefined ? { status } : {}),
    ...(error !== undefined ? { error } : {}),
    priority: options.priority,
  });
  let response: OriginResponse | SwitchedOriginResponse;
  // A lost permit stops the call as the caller's own abort does (see OriginPermit.lost).
  const signal = anySignal(options.signal, permit.lost);
  try {
    const answer = await fetchOrigin(deps.fetch, request, callOptionsOf(deps, options, signal));
    response = withPublicLinks(answer, config, options.publicOrigin);
  } catch (cause) {
    const error = isHerdlessError(cause) ? cause : new HerdlessError("ORIGIN_NETWORK", String(cause), { cause });
    if (options.uploadPending?.() === true) {
      // The origin cannot answer a request it has not all received: the client was the slow one.
      await permit.release("neutral", breakerKey);
      const message = `the request body for ${request.url} had not all arrived when the origin call ended (${error.message})`;
      deps.onOriginCall?.(event("error", undefined, message));
      return { kind: "failed", error: new HerdlessError("CLIENT_TOO_SLOW", message, { cause: error }) };
    }
    const resource = error.code === "ORIGIN_NETWORK" ? breakerKey : sickKey;
    await permit.release(outcomeOfError(error.code, signal?.aborted === true), resource);
    deps.onOriginCall?.(event("error", undefined, error.message));
    return { kind: "failed", error };
  }
  deps.onOriginCall?.(event(metricOfStatus(response.status), response.status));
  const outcome = outcomeOfStatus(response.status, config);
  if (response.kind === "streamed" && response.body) {
    const timers = deps.timers ?? realTimers;
    const held = holdUntilDone(response.body, {
      ...heldShape(response),
      config,
      timers,
      clock: deps.clock,
      url: request.url,
      done: (ending) =>
        void permit.release(ending === "failed" ? "failure" : ending === "lost" ? "neutral" : outcome, sickKey),
      lost: permit.lost,
      contended: permitsWanted(deps.guard),
    });
    const idleMs = config.origin.streamIdleTimeoutMs;
    const body = options.readByClient ? cutWhenUnread(held, idleMs, timers, request.url) : held;
    return { kind: "response", response: { ...response, body } as AnswerTo<R> };
  }
  await permit.release(outcome, sickKey);
  return { kind: "response", response: response as AnswerTo<R> };
}

/**
 * Whether callers wait for an origin permit now: what a client that holds its permit back (a
 * slow download, a slow upload) is cut off for (read-ahead.ts HoldingWatch). Asked once per
 * look at such a client's pace, no more.
 */
export function permitsWanted(guard: OriginGuard): () => Promise<boolean> {
  return async () => (await guard.snapshot()).queued > 0;
}

/**
 * The answer with its links to origin.url moved to the client's host ({@link ownLinksRewritten}):
 * once, as it arrives, so what is stored, streamed, merged from a 304 or relayed is the same.
 */
function withPublicLinks<A extends { headers: [string, string][] }>(
  response: A,
  config: Config,
  publicOrigin?: string,
): A {
  if (publicOrigin === undefined || !config.origin.rewriteRedirects) return response;
  return { ...response, headers: ownLinksRewritten(response.headers, config.origin.url, publicOrigin) };
}

/** What the origin call is made with: the deadline, how much of the body to read first, the signal. */
function callOptionsOf(deps: GuardedCallDeps, options: GuardedCallOptions, signal: AbortSignal | undefined) {
  return {
    timeoutMs: options.timeoutMs,
    maxBodyBytes: options.maxBodyBytes,
    ...(options.pauseMs !== undefined ? { pauseMs: options.pauseMs } : {}),
    budgetBytes: fillBudgetBytes(deps.config),
    clock: deps.clock,
    ...(signal ? { signal } : {}),
    ...(deps.decodes ? { decodes: deps.decodes } : {}),
  };
}

/** One signal for several (absent ones ignored): aborts with the first to abort. */
export function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal | undefined {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  return present.length <= 1 ? present[0] : AbortSignal.any(present);
}
