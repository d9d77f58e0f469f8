import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { HerdlessErrorCode } from "../errors.ts";
import { decideOnFailure } from "../http/decision.ts";
import type { Entry } from "../http/entry.ts";
import type { NearTier } from "../store/near-tier.ts";
import type { FillRequest, FillResult } from "./coordinator.ts";

/** A coordinator's answer that no origin request was made: the same for every caller of the key for a while. */
export type Refusal = Extract<FillResult, { kind: "failed" }>;

/** The refusals that hold for a key until their retry time: the breaker open, the key backing off. */
const STANDING: readonly HerdlessErrorCode[] = ["BREAKER_OPEN", "ORIGIN_BACKOFF"];

interface Mark {
  refusal: Refusal;
  /** When the copy the coordinator sent along was stored: a caller's older copy does not answer for it. */
  theirsAt?: number;
  /** When the key's coordinator is asked again (epoch ms). */
  until: number;
  /** While the one caller asking again (the scout) waits for its answer: until then (epoch ms). */
  scoutUntil?: number;
  /** When the refusal was heard (epoch ms). */
  heardAt: number;
}

/**
 * The coordinator's refusals of a key (the breaker is open, the key backs off), remembered by
 * the edge until their retry time, so that the requests it answers with its own stale copy
 * meanwhile cost no coordinator call. A Worker's coordinator is a Durable Object: in an
 * outage every stale answer was a billed request and a round trip (13,392 calls for 13,815
 * client requests in the bench's outage), each too short for the isolate's one call per key
 * to collapse them.
 *
 * - A refusal is believed until its `retryAfterMs`, and no longer than a probe interval for
 *   an open breaker or half of one for a key's backoff: a key backing off is asked again
 *   within half a probe interval of the breaker closing (key-backoff.ts), and a remembered
 *   backoff must not hold it past that.
 * - Once that time has come, one caller (the scout) asks the coordinator; the others keep the
 *   refusal until its answer, or until `scoutLapseMs` (a scout that never reports).
 * - Any other answer ends the key's mark: the next caller asks as before. One that shows the
 *   origin answered after a refusal was heard (a copy stored since, by any data center's fill)
 *   ends every mark heard before: the breaker has closed, and each key asks again at once
 *   rather than at its own retry time, as every request did before there were marks.
 *
 * @example
 * const marks = new RefusalMarks(config.breaker.probeIntervalMs, config.coordinator.waitTimeoutMs);
 * const refusal = marks.standing(key, now, (code) => decideOnFailure(copy, code, config, now).kind === "stale-if-error");
 * if (!refusal) marks.heard(key, await coordinator.fill(request), clock.now());
 */
export class RefusalMarks {
  private readonly marks = new Map<string, Mark>();
  /** The keys' lengths summed: keys are URLs, and an attacker picks them. */
  private chars = 0;
  /** The origin answered at this moment (a copy stored then): marks heard before it stand no more. */
  private upAt = -Infinity;

  constructor(
    private readonly probeIntervalMs: number,
    private readonly scoutLapseMs: number,
    private readonly maxKeys = 10_000,
    private readonly maxChars = 2 * 1024 * 1024,
  ) {}

  /**
   * The refusal that stands for `key` at `now`, when `usable` says the caller may be answered
   * in its place (its copy serves on that code, and is no older than `theirsAt`, the copy the
   * coordinator answered with, when it sent one). Undefined otherwise: the caller asks the
   * coordinator, and when the refusal's time has come, it is the scout.
   */
  standing(
    key: string,
    now: number,
    usable: (code: HerdlessErrorCode, theirsAt: number | undefined) => boolean,
  ): Refusal | undefined {
    const mark = this.marks.get(key);
    if (mark && mark.heardAt < this.upAt) this.forget(key);
    if (!mark || mark.heardAt < this.upAt || !usable(mark.refusal.code, mark.theirsAt)) return undefined;
    if (now < mark.until || (mark.scoutUntil !== undefined && now < mark.scoutUntil))
      return { ...mark.refusal, retryAfterMs: Math.max(1, mark.until - now) };
    mark.scoutUntil = now + this.scoutLapseMs;
    return undefined;
  }

  /**
   * What the coordinator answered for `key`: a standing refusal is remembered (true); any other
   * answer ends the mark.
   */
  heard(key: string, result: FillResult, now: number): boolean {
    // A refusal of one request's own (a backoff only its failures started: FillResult `askedBy`) is no one else's.
    if (result.kind === "failed" && result.askedBy !== undefined) return false;
    const forMs = result.kind === "failed" ? this.believedMs(result) : undefined;
    if (result.kind !== "failed" || forMs === undefined || forMs <= 0) {
      this.forget(key);
      this.upAt = Math.max(this.upAt, Math.min(answeredAt(result, now), now));
      return false;
    }
    // The refusal alone: the copy the coordinator sent along is not kept here (bodies belong in
    // the near tier, which keeps a newer one: engine-answer.ts), nor one flight's own fields.
    const {
      stale: _copy,
      backoffStarted: _counted,
      response: _own,
      personal: _personal,
      ownInput: _input,
      ...refusal
    } = result;
    const mark: Mark = { refusal: { ...refusal, collapsed: false }, until: now + forMs, heardAt: now };
    if (result.stale) mark.theirsAt = result.stale.storedAt;
    if (!this.marks.delete(key)) this.chars += key.length;
    this.marks.set(key, mark);
    if (this.marks.size > this.maxKeys || this.chars > this.maxChars) this.trim(now);
    return true;
  }

  /** How long a refusal is believed; undefined for any other failure. */
  private believedMs(result: Refusal): number | undefined {
    if (!STANDING.includes(result.code) || result.retryAfterMs === undefined) return undefined;
    const capMs = result.code === "BREAKER_OPEN" ? this.probeIntervalMs : this.probeIntervalMs / 2;
    return Math.min(result.retryAfterMs, capMs);
  }

  /** Lapsed marks go first, then the oldest: a mark only saves a call, losing one costs that call. */
  private trim(now: number): void {
    for (const [key, mark] of this.marks) if (mark.until <= now) this.forget(key);
    for (const key of this.marks.keys()) {
      if (this.marks.size <= this.maxKeys && this.chars <= this.maxChars) return;
      this.forget(key);
    }
  }

  private forget(key: string): void {
    if (this.marks.delete(key)) this.chars -= key.length;
  }
}

/**
 * When an answer shows the origin answered: a copy's storing (not a cached error's), the origin's
 * own answer that is not a failure; -Infinity for anything else (a failure, or nothing said).
 */
function answeredAt(result: FillResult, now: number): number {
  switch (result.kind) {
    case "entry":
      return result.entry.negative ? -Infinity : result.entry.storedAt;
    case "stream":
      return result.head.negative ? -Infinity : result.head.storedAt;
    case "pass":
      return result.fwdStatus < 500 ? now : -Infinity;
    default:
      return -Infinity;
  }
}

/** What {@link askUnlessRefused} reads of the engine's options. */
export interface RefusedAskOptions {
  config: Config;
  clock: Clock;
  refusals?: RefusalMarks | undefined;
}

/**
 * The coordinator's answer to `fill` (`ask`), or, while a refusal of its key stands, that
 * refusal when `copy` answers in its place: this edge's own copy, if it serves on that refusal
 * as the coordinator's answer would have had it served (stale-if-error, never a must-revalidate
 * copy); `"kept"` for a refresh, whose copy stays whatever it is told. A refusal that brings a
 * copy newer than this edge's (another data center's fill reached the key's coordinator last)
 * keeps that copy here: the edge then answers the refusal with it, as the coordinator did.
 *
 * @example
 * const result = await askUnlessRefused(options, nearTier, fill, nearStale, () => coordinator.fill(fill));
 */
export async function askUnlessRefused(
  o: RefusedAskOptions,
  nearTier: NearTier,
  fill: FillRequest,
  copy: Entry | "kept" | undefined,
  ask: () => Promise<FillResult>,
): Promise<FillResult> {
  const { refusals, config, clock } = o;
  if (!refusals) return ask();
  const now = clock.now();
  // The copy answers as the coordinator's answer had it answered: when it serves on that
  // refusal, and is the newest of the two (engine-answer.ts answerFailure serves the newer).
  const spares = (code: HerdlessErrorCode, theirsAt: number | undefined) =>
    copy === "kept" ||
    (copy !== undefined &&
      copy.storedAt >= (theirsAt ?? 0) &&
      decideOnFailure(copy, code, config, now).kind === "stale-if-error");
  const refused = copy ? refusals.standing(fill.key, now, spares) : undefined;
  if (refused) return refused;
  const result = await ask();
  const remembered = refusals.heard(fill.key, result, clock.now());
  const held = copy === "kept" ? undefined : copy;
  if (remembered && result.kind === "failed" && newer(result.stale, held))
    await nearTier.keep(result.stale, fill.primary);
  return result;
}

/** Whether the coordinator's copy replaces this edge's: the same variant, stored later. */
function newer(theirs: Entry | undefined, ours: Entry | undefined): theirs is Entry {
  return theirs !== undefined && ours !== undefined && theirs.key === ours.key && theirs.storedAt > ours.storedAt;
}
