import type { Clock } from "../clock.ts";
import { HerdlessError, type HerdlessErrorCode } from "../errors.ts";
import type { OriginPermit } from "./origin-guard.ts";

/** The refusals that say the same to every caller for a while, so one answer can stand for many. */
const SHARED_REFUSALS = ["BREAKER_OPEN", "QUEUE_FULL"] as const satisfies readonly HerdlessErrorCode[];
type SharedRefusal = (typeof SHARED_REFUSALS)[number];

/**
 * A full queue drains as permits come back, usually well within the 1 s it advertises, so
 * it is believed for a shorter time than an open breaker (whose retry time is its next probe).
 */
const QUEUE_FULL_MEMORY_MS = 250;

interface Refusal {
  code: SharedRefusal;
  message: string;
  until: number;
}

export interface GuardFrontOptions {
  clock: Clock;
  /**
   * Calls that may wait on the shared guard at once: origin.maxConcurrency + origin.maxQueue.
   * The shared guard's cap and queue hold that many for the whole deployment, so any call
   * beyond it could only be refused QUEUE_FULL there.
   */
  maxWaiting: number;
  /**
   * The longest an open breaker is believed: breaker.probeIntervalMs. While a probe is out the
   * shared guard's retry time is when that probe would lapse (longer), but the probe usually
   * fails sooner and the next one is due a probe interval after that.
   */
  probeIntervalMs: number;
}

/**
 * What a caller puts in front of a shared guard (the Worker's one guard object) so that the
 * shared guard sees a rate set by the origin, not by client traffic: under a key explosion
 * or an open breaker, every cold miss would otherwise ask it for a permit.
 *
 * - A refusal that holds for everyone (BREAKER_OPEN, QUEUE_FULL) is remembered until its
 *   retry time and answered here meanwhile. Then one call (the scout) asks again while the
 *   others keep the refusal until its answer: one call per caller per period reaches the
 *   shared guard, and that call is the one that may become the breaker's probe.
 * - At most `maxWaiting` calls wait on the shared guard at once; the rest are refused
 *   QUEUE_FULL here, as the shared guard would have refused them.
 *
 * The cap stays exact: every permit is still the shared guard's. What the front saves is the
 * shared guard's refusals, which are the part of its load that grows with traffic.
 */
export class GuardFront {
  private refusal: Refusal | undefined;
  private waiting = 0;
  private scouting = false;

  constructor(private readonly options: GuardFrontOptions) {}

  /** `ask` is one acquire on the shared guard; it runs only if nothing here answers first. */
  async acquire<P extends OriginPermit>(ask: () => Promise<P>): Promise<P> {
    const scout = this.admit();
    this.waiting++;
    try {
      const permit = await ask();
      this.refusal = undefined;
      return permit;
    } catch (error) {
      this.remember(error);
      throw error;
    } finally {
      this.waiting--;
      if (scout) this.scouting = false;
    }
  }

  /**
   * Throws the refusal that stands; otherwise says whether this call is the scout: the one
   * call that asks the shared guard again once a remembered refusal has run out, while the
   * calls arriving meanwhile keep that refusal until the scout's answer is known.
   */
  private admit(): boolean {
    const now = this.options.clock.now();
    const refusal = this.refusal;
    if (refusal && (now < refusal.until || this.scouting)) {
      // The time left as it is, not rounded up to a second: an edge believes a coordinator's
      // refusal that long (fill/refusal-marks.ts), and a second more held back its probe by a
      // second. The client's Retry-After is rounded up where it is written (http/respond.ts).
      throw new HerdlessError(refusal.code, refusal.message, { retryAfterMs: Math.max(1, refusal.until - now) });
    }
    if (this.waiting >= this.options.maxWaiting) {
      throw new HerdlessError("QUEUE_FULL", `origin queue is full (${this.waiting} calls of this isolate waiting)`, {
        retryAfterMs: 1_000,
      });
    }
    if (!refusal) return false;
    this.scouting = true;
    return true;
  }

  private remember(error: unknown): void {
    if (!(error instanceof HerdlessError)) return;
    const code = SHARED_REFUSALS.find((c) => c === error.code);
    if (!code) return;
    const retryAfterMs = error.retryAfterMs ?? 1_000;
    const forMs = Math.min(retryAfterMs, code === "QUEUE_FULL" ? QUEUE_FULL_MEMORY_MS : this.options.probeIntervalMs);
    this.refusal = { code, message: error.message, until: this.options.clock.now() + forMs };
  }
}
