import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import { HerdlessError } from "../errors.ts";
import { keyTag } from "./breaker.ts";
import type { OriginOutcome } from "./origin-guard.ts";

/** The format of {@link BackoffRecord}; bumped on every incompatible change. */
export const BACKOFF_FORMAT_VERSION = 1;

/** One key's backoff as a runtime keeps it. Instants are epoch ms. */
export interface BackoffRecord {
  v: typeof BACKOFF_FORMAT_VERSION;
  /** Sick origin calls in a row for this key. */
  failures: number;
  /** The origin is not asked for this key before this instant. */
  until: number;
  /** The record may be dropped from this instant: a key that stays quiet starts over. */
  forgetAt: number;
  /**
   * When the last sick call was recorded: a breaker that closed after it (the origin came
   * back) cuts the backoff short. Absent in records written before it was kept: taken as 0.
   */
  failedAt?: number;
  /**
   * While every sick call of the run came from one request, its digest (asked-by.ts): only requests
   * like it are held back (backoffAnswer). Absent once two different ones were sick: all are.
   */
  askedBy?: string;
}

/**
 * Where a runtime keeps per-key backoff: get, set and delete, nothing more; when to back off
 * and for how long is {@link KeyBackoff}'s. One record per key, written only by the holder of
 * the key's lease, so a plain overwrite never loses a concurrent update. A store may drop a
 * record at its `forgetAt` and must not return it after then.
 * Deployment-wide on Workers (the key's Durable Object storage), fleet-wide on Redis (a key
 * with a TTL in the key's slot), per process in memory ({@link MemoryBackoffStore}).
 */
export interface BackoffStore {
  get(key: string): Promise<BackoffRecord | undefined>;
  set(key: string, record: BackoffRecord): Promise<void>;
  delete(key: string): Promise<void>;
}

/** The configured schedule: `baseMs` after the first sick call that waits ({@link afterSickCall}), doubling up to `maxMs`; `baseMs` 0 is off. */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
}

export function backoffPolicy(config: Config): BackoffPolicy {
  return { baseMs: config.breaker.backoffBaseMs, maxMs: config.breaker.backoffMaxMs };
}

/**
 * How long a key waits after its `failures`-th sick call in a row: `baseMs · 2^(failures−1)`
 * capped at `maxMs`, then "equal jitter" (a uniform draw in the upper half). Half is kept so
 * a key never retries at once; the other half spreads the retries of keys that failed
 * together (an outage fails every key at the same moment) so they do not return as a herd.
 *
 * @example
 * backoffDelayMs(3, { baseMs: 1_000, maxMs: 60_000 }, () => 1); // 4000
 */
export function backoffDelayMs(failures: number, policy: BackoffPolicy, random: () => number): number {
  // 2^30 is past any cap a timer can honour; larger exponents would only overflow.
  const exponential = policy.baseMs * 2 ** Math.min(Math.max(failures, 1) - 1, 30);
  const capped = Math.min(exponential, policy.maxMs);
  return Math.ceil(capped / 2 + (capped / 2) * Math.min(Math.max(random(), 0), 1));
}

/**
 * How a sick call ended: with a status the origin chose to send (`502`/`503`/`504`…), or with
 * no answer at all (a timeout, a refused or reset connection, a body cut short).
 */
export type Sickness = "status" | "no-answer";

/**
 * The record after one more sick call. A call that got no answer starts the wait at once: it
 * held an origin connection (a timeout for its whole length) and its retry would do the same.
 * A sick status is asked again once before the key waits: the answer was quick and cheap for
 * the origin, a single one is not yet a pattern, and a cache must not reuse a 5xx without
 * explicit freshness (RFC 9111 §4; the HTTP caching conformance suite checks that the request
 * after a 502/503/504 reaches the origin). The record is forgotten `maxMs` after its backoff
 * ends: a key that fails again within that time backs off longer; one that stays quiet starts over.
 * A run of one request's sick calls (`askedBy`) stays its own; one from another confirms it.
 */
export function afterSickCall(
  previous: BackoffRecord | undefined,
  now: number,
  policy: BackoffPolicy,
  random: () => number,
  sickness: Sickness = "no-answer",
  askedBy?: string,
): BackoffRecord {
  const failures = (previous?.failures ?? 0) + 1;
  const steps = sickness === "status" ? failures - 1 : failures;
  const until = steps === 0 ? now : now + backoffDelayMs(steps, policy, random);
  const record = { v: BACKOFF_FORMAT_VERSION, failures, until, forgetAt: until + policy.maxMs, failedAt: now } as const;
  return askedBy !== undefined && (!previous || previous.askedBy === askedBy) ? { ...record, askedBy } : record;
}

/**
 * What {@link KeyBackoff.check} found: the refusal while the key backs off, the longer one for a
 * caller whose stored copy stands in ({@link heldUntil}), and the record it read.
 */
export interface BackoffCheck {
  refusal?: HerdlessError;
  /** The refusal for a caller with a copy to stand in (stale-if-error): set whenever `refusal` is, and maybe longer. */
  held?: HerdlessError;
  record?: BackoffRecord;
}

/**
 * Until when a caller whose stored copy stands in (stale-if-error) is not sent to the origin:
 * the key's backoff, and at least `probeIntervalMs` (plus up to half of it, spread over keys)
 * after its last sick call. The breaker judges a run of sick calls only once it has lasted
 * `probeIntervalMs` (breaker.ts): before, each key that failed went again at the end of its
 * own backoff, a sick status at once (afterSickCall), and in the bench's outage the ten keys
 * sent 20–24 calls in the run's first second where one each tells as much (bench/README.md,
 * the outage's origin requests). Such a caller loses nothing: it gets its copy, as it would
 * after the retry failed. A caller without a copy still asks again once after a sick status,
 * and at its backoff's end: its answer is an error otherwise.
 */
export function heldUntil(key: string, record: BackoffRecord, probeIntervalMs: number): number {
  if (record.failedAt === undefined) return record.until;
  return Math.max(record.until, record.failedAt + probeIntervalMs + Math.floor((keyShare(key) * probeIntervalMs) / 2));
}

/** The key's fixed place in [0, 1), from its tag: spreads keys' returns over an interval so that they do not come as one herd. */
function keyShare(key: string): number {
  return Number.parseInt(keyTag(key), 16) / 2 ** 32;
}

export interface KeyBackoffOptions {
  store: BackoffStore;
  config: Config;
  clock: Clock;
  /** Jitter source in [0, 1); Math.random by default. */
  random?: () => number;
  /**
   * When the deployment's breaker last closed after an outage (its guard's snapshot,
   * `recoveredAt`): keys that backed off before then are asked again within about one probe
   * interval of it, not at the end of their own backoff.
   */
  recoveredAt?: () => Promise<number | undefined>;
}

/**
 * Per-key backoff: a key whose origin call was sick (a timeout, a refused or reset connection,
 * a body cut short, a status in `breaker.failureStatuses`: the breaker's own judgement, see
 * guarded-call.ts) is not asked for again until its backoff passes; any answer that proves the
 * origin up resets it; calls that say nothing (refused by the guard, cancelled) leave it.
 * The key's coordinator checks before it calls the origin and records how the call ended,
 * both under the key's lease.
 *
 * @example
 * const backoff = new KeyBackoff({ store: new MemoryBackoffStore(clock), config, clock });
 * const { refusal, record } = await backoff.check(key);
 * if (refusal) return refusal; // ORIGIN_BACKOFF, with retryAfterMs
 * await backoff.record(key, outcome, record);
 */
export class KeyBackoff {
  private readonly policy: BackoffPolicy;
  private readonly random: () => number;

  constructor(private readonly o: KeyBackoffOptions) {
    this.policy = backoffPolicy(o.config);
    this.random = o.random ?? Math.random;
  }

  /** Checks of {@link precheck} in flight, by key. */
  private readonly prechecks = new Map<string, Promise<BackoffCheck>>();

  /**
   * {@link check}, shared by every caller that asks for the same key while one is in flight:
   * for a look before the key's lease, which decides nothing alone (the holder checks again
   * under the lease), so many callers of one process at an expiry cost one read. Never
   * rejects unhandled: a caller that awaits it gets the read's failure.
   */
  precheck(key: string): Promise<BackoffCheck> {
    const shared = this.prechecks.get(key);
    if (shared) return shared;
    const checked = this.check(key);
    this.prechecks.set(key, checked);
    const forget = () => void (this.prechecks.get(key) === checked && this.prechecks.delete(key));
    checked.then(forget, forget);
    return checked;
  }

  /** The key's record, with ORIGIN_BACKOFF refusals while its backoff runs. Off: nothing is read. */
  async check(key: string): Promise<BackoffCheck> {
    if (this.policy.baseMs === 0) return {};
    const record = await this.o.store.get(key);
    if (!record) return {};
    const now = this.o.clock.now();
    const held = await this.until(key, record, heldUntil(key, record, this.o.config.breaker.probeIntervalMs), now);
    if (now >= held) return { record };
    const until = Math.min(held, await this.until(key, record, record.until, now));
    const refused = (end: number) => {
      const retryAfterMs = end - now;
      const message = `the origin failed ${record.failures} time(s) in a row for ${key}; not asked again for ${retryAfterMs} ms`;
      return new HerdlessError("ORIGIN_BACKOFF", message, { retryAfterMs });
    };
    return { ...(now < until ? { refusal: refused(until) } : {}), held: refused(held), record };
  }

  /**
   * When the key may be asked again (`end`: the end of its backoff, {@link heldUntil} for a
   * caller with a copy) or, when the breaker closed after the key's last sick call (the outage
   * it failed in is over), a moment within half a probe
   * interval of that close, spread over keys so that they do not return as one herd. The
   * guard is read for every key still backing off, however little of its backoff is left: a
   * key first asked a while after the close, with a second left, is due already (its moment
   * passed), and skipping the read served its stale copy past that moment. The read is
   * shared by every key and made at most once per half interval: a key refused a thousand
   * times during an outage costs a few reads.
   */
  private async until(key: string, record: BackoffRecord, end: number, now: number): Promise<number> {
    if (!this.o.recoveredAt || now >= end) return end;
    const spreadMs = this.o.config.breaker.probeIntervalMs / 2;
    const recoveredAt = await this.recovery(now, spreadMs);
    if (recoveredAt === undefined || recoveredAt <= (record.failedAt ?? 0)) return end;
    return Math.min(end, recoveredAt + Math.floor(keyShare(key) * spreadMs));
  }

  private recovered: { readAt: number; at: Promise<number | undefined> } | undefined;

  /** The breaker's last close, as read at most `maxAgeMs` ago; unknown when the guard cannot say. */
  private recovery(now: number, maxAgeMs: number): Promise<number | undefined> {
    if (!this.recovered || now - this.recovered.readAt >= maxAgeMs) {
      const at = (this.o.recoveredAt?.() ?? Promise.resolve(undefined)).catch(() => undefined);
      this.recovered = { readAt: now, at };
    }
    return this.recovered.at;
  }

  /**
   * Records how an origin call for `key` ended. `previous` is what {@link check} read under
   * the same lease: a success deletes only a record that exists, so the usual fill costs no
   * write. `sickness` says whether a sick call got a status or no answer ({@link afterSickCall}),
   * `askedBy` whose request made it. True when the key now waits and did not: it started backing off.
   */
  async record(
    key: string,
    outcome: OriginOutcome,
    previous: BackoffRecord | undefined,
    sickness: Sickness = "no-answer",
    askedBy?: string,
  ): Promise<boolean> {
    if (this.policy.baseMs === 0 || outcome === "neutral") return false;
    if (outcome === "success") {
      if (previous) await this.o.store.delete(key);
      return false;
    }
    const now = this.o.clock.now();
    const next = afterSickCall(previous, now, this.policy, this.random, sickness, askedBy);
    await this.o.store.set(key, next);
    return next.until > now && (previous === undefined || previous.until <= now);
  }
}

/**
 * A {@link BackoffStore} in process memory: one Node process, or the fleet's fallback while
 * Redis is away. Holds at most `maxKeys` records; past that, forgotten ones are swept first,
 * then the oldest written goes (its key then simply retries sooner).
 */
export class MemoryBackoffStore implements BackoffStore {
  private readonly records = new Map<string, BackoffRecord>();

  constructor(
    private readonly clock: Clock,
    private readonly maxKeys = 10_000,
  ) {}

  async get(key: string): Promise<BackoffRecord | undefined> {
    const record = this.records.get(key);
    if (record && this.clock.now() >= record.forgetAt) {
      this.records.delete(key);
      return undefined;
    }
    return record;
  }

  async set(key: string, record: BackoffRecord): Promise<void> {
    this.records.delete(key);
    if (this.records.size >= this.maxKeys) this.sweep();
    this.records.set(key, record);
  }

  async delete(key: string): Promise<void> {
    this.records.delete(key);
  }

  private sweep(): void {
    const now = this.clock.now();
    for (const [key, record] of this.records) if (now >= record.forgetAt) this.records.delete(key);
    const oldest = this.records.keys().next();
    if (this.records.size >= this.maxKeys && !oldest.done) this.records.delete(oldest.value);
  }
}
