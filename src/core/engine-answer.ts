import type { CacheStatus } from "./http/cache-status.ts";
import type { Clock } from "./clock.ts";
import type { Config } from "./config.ts";
import { fromCoordinatorCopy, type FillResult } from "./fill/coordinator.ts";
import { answerFromEntry, answerFromPass, preconditionAnswer, rangeAnswer, type ClientAsk } from "./http/answer.ts";
import { selectRange } from "./http/range.ts";
import { streamPart } from "./http/stream-part.ts";
import { evaluatePreconditions } from "./http/conditional.ts";
import { decideOnFailure, servableOnError } from "./http/decision.ts";
import type { Entry } from "./http/entry.ts";
import type { Metrics } from "./admin/metrics.ts";
import { refusedHere } from "./origin/guarded-call.ts";
import { fromPass, fromStream, type EngineRequest, type EngineResponse } from "./http/respond.ts";
import { FAILURE_DETAIL, failureAnswer, shown } from "./http/failure-answer.ts";
import type { NearTier } from "./store/near-tier.ts";
import type { RelayFallback } from "./origin/relay.ts";
import type { HerdlessErrorCode } from "./errors.ts";
import { waitingFull, type WaitingRequests } from "./guard/waiting-requests.ts";

/** What the engine lends its answers: config, time, its near tier, its counters and its relay. */
export interface AnswerContext {
  config: Config;
  clock: Clock;
  nearTier: NearTier;
  /** Counts an answer by kind, timed from `request.receivedAt` when the adapter took that reading. */
  count: (request: EngineRequest, kind: Parameters<Metrics["count"]>[0], key: string | undefined) => void;
  /** Counts what the origin's protection did (metrics.ts ProtectionKind). */
  protect?: (kind: Parameters<Metrics["protect"]>[0]) => void;
  /**
   * Copies of the URL of `primary` read earlier, those that may stand in for the origin's
   * answer now (fill/stand-in.ts standingCopies): checked against the purges in force now and
   * this edge's invalidation marks.
   */
  standIn: (copies: Entry[], primary: string) => Promise<Entry[]>;
  relay: (
    request: EngineRequest,
    status: CacheStatus,
    kind: "pass",
    fallback?: RelayFallback,
  ) => Promise<EngineResponse>;
}

/** Where the answer came from, as the engine saw it before asking the coordinator. */
export interface AnswerOrigin {
  fwd: CacheStatus["fwd"];
  /** The copy this edge holds, if any: it may stand in for a failure, or be replaced. */
  nearStale: Entry | undefined;
  primary: string;
}

/**
 * The client's answer for what the coordinator gave: an entry (kept in the near tier too), a
 * body streaming from the one fetch, the origin's unstorable answer, a relay of its own, or
 * a failure (hidden behind a stale copy where stale-if-error allows).
 */
export async function answerFill(
  ctx: AnswerContext,
  request: EngineRequest,
  result: FillResult,
  from: AnswerOrigin,
): Promise<EngineResponse> {
  const { fwd, nearStale, primary } = from;
  const now = ctx.clock.now();
  result = negativeAsFailure(result, nearStale, ctx.config, now);
  switch (result.kind) {
    case "entry":
      if (!result.unkept) await ctx.nearTier.keep(result.entry, primary);
      return answerEntry(ctx, request, result, from, now);
    case "stream": {
      // The body is on its way from this key's one fetch; the coordinator stores it once whole. No `stored`
      // (RFC 9211 §2.5: the cache stored the response): the head goes out before that is known.
      ctx.count(request, result.collapsed ? "collapsed" : "miss", primary);
      const status: CacheStatus = { fwd, fwdStatus: result.fwdStatus, collapsed: result.collapsed };
      if (result.size === "too-large") status.detail = "too-large";
      if (result.size === "over-budget") status.detail = "fill-budget";
      // A part of a body that will not be kept (a detail above) is the origin's to cut: cut here, the whole body is
      // read up to the part's end for one client (`bytes=-1` of a 64 MiB file read it all, for each such request: the
      // RangeAmp "small byte range" amplification). This caller lets go of the shared stream and asks for its part.
      const kept = status.detail === undefined;
      if (result.softPurged && kept) status.detail = "stale-while-revalidate";
      if (kept || !partial(result.head, result, request))
        return answerStream(ctx, request, result, status, primary, now);
      void result.body.cancel().catch(() => undefined);
      return ctx.relay(request, { fwd, detail: status.detail }, "pass");
    }
    case "pass": {
      ctx.count(request, "pass", primary);
      // The origin's answer replaced what this edge holds (a 304 that made it private, say),
      // unless it answered this request's own input (an attacker's header): the copy stays.
      if (nearStale && !result.keepsCopy) await ctx.nearTier.drop(nearStale.key);
      const status: CacheStatus = { fwd, fwdStatus: result.fwdStatus, detail: result.reason };
      return answerFromPass(fromPass(shown(result.response, ctx.config), status, request.method), ask(request), now);
    }
    case "alone": {
      // On its own, through the guard; a copy stale-if-error allows still stands in for its failure.
      const [copy] = await standing(ctx, [nearStale], primary, now);
      return ctx.relay(request, { fwd, detail: "uncacheable" }, "pass", (code, fwdStatus) =>
        staleAnswer(ctx, request, copy, { code, fwdStatus, primary }, ctx.clock.now()),
      );
    }
    case "failed":
      return answerFailure(ctx, request, result, from, now);
  }
}

/**
 * The answer of a request that waits for `filling` (the coordinator's fill, or a relay of its
 * own), holding one of the process's `origin.maxWaiting` places while it waits; with none
 * free, answered at once as a fill herdless refused: a copy it holds, else a 503.
 */
export async function heldAnswer(
  ctx: AnswerContext,
  waiting: WaitingRequests | undefined,
  request: EngineRequest,
  filling: () => Promise<FillResult | EngineResponse>,
  from: AnswerOrigin,
): Promise<EngineResponse> {
  // Written out rather than through guard `held`: one await frame less for each waiting request.
  const leave = waiting ? waiting.take() : undefined;
  if (waiting && !leave) return answerFill(ctx, request, waitingFull(waiting.limit), from);
  try {
    const result = await filling();
    return "kind" in result ? await answerFill(ctx, request, result, from) : result;
  } finally {
    leave?.();
  }
}

/**
 * A body arriving from the one fetch of the key, as this caller's answer. A precondition the
 * head decides (RFC 9111 §4.3.2: a 304 or 412, as from a stored entry) needs none of the body:
 * this caller lets go of its stream, as a HEAD does, and the flight still reads and stores it.
 */
function answerStream(
  ctx: AnswerContext,
  request: EngineRequest,
  result: Extract<FillResult, { kind: "stream" }>,
  status: CacheStatus,
  primary: string,
  now: number,
): EngineResponse {
  const own = ownFields(result);
  const head = own.length ? { ...result.head, headers: [...result.head.headers, ...own] } : result.head;
  const bodiless =
    request.method === "HEAD" || evaluatePreconditions(head, request.headers, request.method) !== "proceed";
  const body = bodiless || partial(head, result, request) ? result.body : ctx.nearTier.copied(result, primary);
  const full = fromStream(head, body, result.bytes, status, bodiless ? "HEAD" : request.method, now);
  const decided = preconditionAnswer(head, full, ask(request));
  if (decided || bodiless || result.bytes === undefined) return decided ?? full;
  // RFC 9110 §14: a Range is cut from the body as it arrives, as from a stored one. Sent whole,
  // a video's seek (`bytes=N-`) on a cold key or one too large to store got a 200 of the whole
  // file, which a media player cannot seek in (Safari plays none), for every seek.
  const part = rangeAnswer(head, result.bytes, full, ask(request), (start, end) => streamPart(body, start, end));
  // A 416 takes none of the body: let go of it, as a HEAD does (the flight still stores it).
  if (part?.status === 416) void body.cancel().catch(() => undefined);
  return part ?? full;
}

/** Whether this caller is answered a part of the streaming body (its copy into the near tier is then left to others). */
function partial(
  head: Omit<Entry, "body">,
  result: Extract<FillResult, { kind: "stream" }>,
  request: EngineRequest,
): boolean {
  return result.bytes !== undefined && selectRange(head, request.headers, request.method, result.bytes).kind !== "full";
}

/**
 * A cached error (another edge's or process's failed fetch) never hides this edge's own
 * good copy: answer as the failure it stands for, so stale-if-error can apply.
 */
function negativeAsFailure(result: FillResult, nearStale: Entry | undefined, config: Config, now: number): FillResult {
  if (result.kind !== "entry" || !result.entry.negative || !servableOnError(nearStale, config, now)) return result;
  const { entry } = result;
  return {
    kind: "failed",
    code: "ORIGIN_STATUS",
    message: `origin answered ${entry.status}`,
    fwdStatus: entry.status,
    response: { status: entry.status, headers: entry.headers, body: entry.body },
    collapsed: result.collapsed,
  };
}

function answerEntry(
  ctx: AnswerContext,
  request: EngineRequest,
  result: Extract<FillResult, { kind: "entry" }>,
  { fwd, primary }: AnswerOrigin,
  now: number,
): EngineResponse {
  const { entry } = result;
  const copy = fromCoordinatorCopy(result);
  // A stale copy the coordinator held, served inside its window while a refresh runs. Not the
  // origin's own answer, stale as it arrived (an Age past its max-age): no window, no refresh.
  const servedStale = (copy || result.softPurged === true) && now >= entry.staleAt;
  ctx.count(
    request,
    entry.negative ? "negative" : result.collapsed ? "collapsed" : servedStale ? "stale" : copy ? "hit" : "miss",
    primary,
  );
  const status = filledStatus(result, fwd);
  if (entry.negative) status.detail = "negative";
  else if (servedStale) status.detail = "stale-while-revalidate";
  return answerFromEntry(entry, status, ask(request), now, ownFields(result));
}

/**
 * The fields the origin sent the request that made the flight and the entry does not keep
 * (coordinator.ts RequesterFields): that request's answer shows them beside the entry's.
 * Never for a caller that joined the flight.
 */
function ownFields(result: Extract<FillResult, { kind: "entry" | "stream" }>): [string, string][] {
  return (result.collapsed ? undefined : result.requesterFields) ?? [];
}

/**
 * The Cache-Status of an answer from the entry a coordinator gave. RFC 9211 §2.2: `fwd`
 * only when the request went forward. The coordinator's stored copy is this cache's shared
 * tier (the key's object, Redis): answered from it, nothing went to the origin.
 *
 * @example
 * filledStatus({ kind: "entry", entry, fwdStatus: 200, collapsed: true, stored: false }, "stale"); // fwd=stale; fwd-status=200; collapsed
 */
export function filledStatus(result: Extract<FillResult, { kind: "entry" }>, fwd: CacheStatus["fwd"]): CacheStatus {
  if (fromCoordinatorCopy(result)) return { hit: true };
  return {
    fwd,
    fwdStatus: result.fwdStatus ?? result.entry.status,
    stored: result.stored,
    collapsed: result.collapsed,
  };
}

/**
 * RFC 5861 §4: the newest copy that may stand in for the error, else the failure itself.
 * Both copies were read before the flight ended (the coordinator's when its flight started,
 * this edge's before it asked): a purge or a write since then has the last word. A request
 * that waited on another's fetch says `collapsed` (RFC 9211 §2.6), whatever it brought.
 */
async function answerFailure(
  ctx: AnswerContext,
  request: EngineRequest,
  result: Extract<FillResult, { kind: "failed" }>,
  { fwd, nearStale, primary }: AnswerOrigin,
  now: number,
): Promise<EngineResponse> {
  const { config } = ctx;
  if (result.code === "ORIGIN_BACKOFF") ctx.protect?.("backoff-answered");
  const best = newest(...(await standing(ctx, [result.stale, nearStale], primary, now)));
  const stale = staleAnswer(ctx, request, best, { ...result, primary }, now);
  if (stale) return stale;
  const detail = FAILURE_DETAIL[result.code] ?? "origin-error";
  const status: CacheStatus = { fwd, detail, ...(result.fwdStatus ? { fwdStatus: result.fwdStatus } : {}) };
  if (result.collapsed) status.collapsed = true;
  ctx.count(request, !result.response && refusedHere(result.code) ? "refused" : "error", primary);
  const mustRevalidate = [result.stale, nearStale].some((copy) => copy?.mustRevalidate === true);
  return failureAnswer(result, status, request.method, config, mustRevalidate);
}

/** The stored copy's answer in place of a failure (`code`), where stale-if-error (or serving stale while the origin gives no answer) allows. */
function staleAnswer(
  ctx: AnswerContext,
  request: EngineRequest,
  copy: Entry | undefined,
  failure: { code: HerdlessErrorCode; fwdStatus?: number | undefined; primary: string; collapsed?: boolean },
  now: number,
): EngineResponse | undefined {
  const verdict = decideOnFailure(copy, failure.code, ctx.config, now);
  if (verdict.kind !== "stale-if-error") return undefined;
  ctx.count(request, "stale-if-error", failure.primary);
  const detail = FAILURE_DETAIL[failure.code] ?? "origin-error";
  const served: CacheStatus = { fwd: "stale", detail: detail === "origin-error" ? "stale-if-error" : detail };
  if (failure.fwdStatus) served.fwdStatus = failure.fwdStatus;
  if (failure.collapsed) served.collapsed = true;
  return answerFromEntry(verdict.entry, served, ask(request), now);
}

/** The parts of the request an answer from a stored entry looks at. */
export function ask(request: EngineRequest): ClientAsk {
  return { method: request.method, headers: request.headers };
}

/**
 * The copies that may stand in for a failure now: servable on error, and neither purged nor
 * invalidated since they were read ({@link AnswerContext.standIn}; only those cost the check).
 */
async function standing(
  ctx: AnswerContext,
  copies: (Entry | undefined)[],
  primary: string,
  now: number,
): Promise<Entry[]> {
  const servable = copies.filter((entry) => servableOnError(entry, ctx.config, now));
  return servable.length === 0 ? [] : ctx.standIn(servable, primary);
}

function newest(...entries: Entry[]): Entry | undefined {
  return entries.reduce<Entry | undefined>((best, e) => (best && best.storedAt >= e.storedAt ? best : e), undefined);
}
