import type { BreakerState, OriginOutcome } from "./origin-guard.ts";

/** One slice of the sliding window: calls and sick calls that ended in it, and a few of the failing keys. */
export interface WindowBucket {
  /** Start of the slice (epoch ms, a multiple of the slice length). */
  at: number;
  calls: number;
  failures: number;
  /** Tags ({@link keyTag}) of distinct failing keys, at most `minFailingKeys` per slice. */
  keys: string[];
}

/** Persistable breaker state (Durable Object storage, Redis); versioned like entries. */
export interface BreakerRecord {
  v: 2;
  state: BreakerState;
  /** While open: when the next probe may go out. */
  nextProbeAt: number;
  /** While half-open: when the probe's permission lapses (its holder may have died). */
  probeExpiresAt: number;
  /** While half-open: the permit id of the probe in flight; only its outcome moves the breaker. */
  probeId: string;
  /** While closed: the last `windowMs` of outcomes, oldest first. */
  buckets: WindowBucket[];
  /** When a probe's success last closed it (epoch ms): keys that backed off before then may return (key-backoff.ts). */
  recoveredAt?: number;
  /**
   * While closed: the sick calls since the last call that proved the origin up, within
   * `windowMs` of the first of them (`since`, epoch ms), and up to `minFailingKeys` of their key tags.
   */
  streak?: { failures: number; keys: string[]; since: number };
}

export interface BreakerSettings {
  /** Sick calls needed in the window (so also the fewest calls the rate is judged on). */
  failureThreshold: number;
  /** Share of the window's calls that must be sick, 0–1. */
  failureRate: number;
  /** Distinct failing keys needed in the window: one broken URL never opens the breaker. */
  minFailingKeys: number;
  windowMs: number;
  probeIntervalMs: number;
  /** How long a probe may run before another may be sent. */
  probeTimeoutMs: number;
}

/** The window is kept as this many slices. */
const SLICES = 10;

export const closedBreaker = (): BreakerRecord => ({
  v: 2,
  state: "closed",
  nextProbeAt: 0,
  probeExpiresAt: 0,
  probeId: "",
  buckets: [],
});

/** A short tag for a key (FNV-1a, 32 bits, hex): distinct keys are counted without storing them. */
export function keyTag(key: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, "0");
}

/**
 * A circuit breaker as pure transitions over a record, so every runtime keeps the same
 * rules and only stores the record (in memory, in a Durable Object, in Redis; the fleet's
 * Lua in node/redis/guard-scripts.ts restates them).
 *
 * - closed: everything passes. It opens when, within the last `windowMs`, at least
 *   `failureThreshold` calls were sick, they are at least `failureRate` of the calls, and
 *   they came from at least `minFailingKeys` distinct keys. So a real outage opens it
 *   within a few calls, and one URL failing forever never does;
 * - open: nothing passes until `nextProbeAt`, then exactly one caller becomes the probe
 *   (half-open), named by its permit id;
 * - half-open: nothing passes but the probe. Only the outcome of the probe in flight moves
 *   the breaker: its success closes it, its failure reopens it for another
 *   `probeIntervalMs`. A probe that never reports lapses after `probeTimeoutMs` and the
 *   next caller probes; the lapsed probe's late outcome is then ignored, so it cannot
 *   cancel the newer probe and let a third one out.
 */
export function admit(
  record: BreakerRecord,
  settings: BreakerSettings,
  now: number,
  probeId: string,
): { admitted: boolean; probe: boolean; record: BreakerRecord; retryAfterMs: number } {
  if (record.state === "closed") return { admitted: true, probe: false, record, retryAfterMs: 0 };
  const probeDue = record.state === "open" ? now >= record.nextProbeAt : now >= record.probeExpiresAt;
  if (!probeDue) {
    const until = record.state === "open" ? record.nextProbeAt : record.probeExpiresAt;
    // The time left as it is: a caller that remembers the refusal (the Worker's guard front)
    // asks again when the probe is due. Rounded up to a second, a refusal heard 10 ms before
    // the probe was due held every front past it: one probe every other second, not one a
    // second. The client's Retry-After is rounded up where it is written (http/respond.ts).
    return { admitted: false, probe: false, record, retryAfterMs: Math.max(1, until - now) };
  }
  const next: BreakerRecord = {
    ...record,
    state: "half-open",
    probeExpiresAt: now + settings.probeTimeoutMs,
    probeId,
  };
  return { admitted: true, probe: true, record: next, retryAfterMs: 0 };
}

/** Records how an admitted call ended: `permitId` names it (the probe's id), `key` what it fetched. */
export function record(
  current: BreakerRecord,
  outcome: OriginOutcome,
  permitId: string,
  key: string,
  settings: BreakerSettings,
  now: number,
): BreakerRecord {
  if (outcome === "neutral") {
    if (current.state !== "half-open" || permitId !== current.probeId) return current;
    // The probe said nothing of the origin (cancelled: its client hung up, or never sent): the
    // next one goes after probeIntervalMs, as after a failed probe, or when this one would
    // have lapsed if sooner. It had kept the breaker half-open, every caller refused, until its
    // probeTimeoutMs (the longest origin timeout) ran out.
    const nextProbeAt = Math.min(now + settings.probeIntervalMs, current.probeExpiresAt);
    return { ...current, state: "open", nextProbeAt, probeExpiresAt: 0, probeId: "" };
  }
  if (current.state !== "closed") {
    // Calls admitted before it opened, and lapsed probes, say nothing the probe will not.
    if (current.state !== "half-open" || permitId !== current.probeId) return current;
    if (outcome === "success") return { ...closedBreaker(), recoveredAt: now };
    return { ...current, state: "open", nextProbeAt: now + settings.probeIntervalMs, probeExpiresAt: 0, probeId: "" };
  }
  const tag = outcome === "failure" ? keyTag(key) : undefined;
  const buckets = slide(current.buckets, settings, now, tag);
  const totals = sum(buckets);
  const streak = tag === undefined ? undefined : lengthened(current.streak, tag, settings, now);
  const sick =
    (totals.failures >= settings.failureThreshold &&
      totals.failures >= settings.failureRate * totals.calls &&
      totals.keys >= settings.minFailingKeys) ||
    (streak !== undefined &&
      streak.failures >= settings.failureThreshold &&
      streak.keys.length >= settings.minFailingKeys &&
      now - streak.since >= settings.probeIntervalMs);
  if (sick) return { ...closedBreaker(), state: "open", nextProbeAt: now + settings.probeIntervalMs };
  const { streak: _ended, ...rest } = current;
  return streak ? { ...rest, buckets, streak } : { ...rest, buckets };
}

/**
 * The run of sick calls with one more (tagged `tag`). An origin that goes down all at once
 * fails every call, but the window still holds the minutes' successes before it: the rate
 * alone waited until failures outnumbered them, 3–5 s into an outage, while every key's own
 * backoff let it ask again (bench/README.md, the outage target). A run of sick calls from
 * `minFailingKeys` keys that no call proving the origin up interrupts opens the breaker as
 * well (Envoy's consecutive-5xx rule); one broken URL among working ones never makes one.
 * The run must also have lasted `probeIntervalMs`: a healthy origin's few broken URLs asked
 * at once (the caching conformance suite's stale-if-error tests, whose origin closes the
 * connection or answers 503 on purpose, six in 30 ms) fail together and then stop, where an
 * origin that is down goes on failing.
 */
function lengthened(
  streak: BreakerRecord["streak"],
  tag: string,
  settings: BreakerSettings,
  now: number,
): NonNullable<BreakerRecord["streak"]> {
  // A run is judged within one window, as the rate is: three sick calls hours apart are not an outage.
  if (!streak || now - streak.since > settings.windowMs) return { failures: 1, keys: [tag], since: now };
  const keys = streak.keys;
  return {
    failures: streak.failures + 1,
    keys: keys.includes(tag) || keys.length >= settings.minFailingKeys ? keys : [...keys, tag],
    since: streak.since,
  };
}

/** The window's slices after one more call at `now` (`tag` set for a sick call). */
function slide(
  buckets: WindowBucket[],
  settings: BreakerSettings,
  now: number,
  tag: string | undefined,
): WindowBucket[] {
  const sliceMs = Math.max(1, Math.floor(settings.windowMs / SLICES));
  const at = now - (now % sliceMs);
  const kept = buckets.filter((b) => b.at > now - settings.windowMs && b.at !== at);
  const old = buckets.find((b) => b.at === at);
  const slice: WindowBucket = old ? { ...old, keys: [...old.keys] } : { at, calls: 0, failures: 0, keys: [] };
  slice.calls++;
  if (tag !== undefined) {
    slice.failures++;
    if (!slice.keys.includes(tag) && slice.keys.length < settings.minFailingKeys) slice.keys.push(tag);
  }
  kept.push(slice);
  return kept;
}

function sum(buckets: WindowBucket[]): { calls: number; failures: number; keys: number } {
  let calls = 0;
  let failures = 0;
  const keys = new Set<string>();
  for (const b of buckets) {
    calls += b.calls;
    failures += b.failures;
    for (const k of b.keys) keys.add(k);
  }
  return { calls, failures, keys: keys.size };
}

/**
 * Whether `next` must be written over `saved`, the record a runtime last persisted (a
 * Durable Object's storage): anything that can open, hold or close the breaker is, and a
 * success is when it starts a slice of the window or one slides out. A success that only
 * adds a call to the current slice is kept in memory, so a healthy origin costs the guard
 * one write per slice (`windowMs` / 10), not one per call. An instance that is reset loses
 * at most those calls of the current slice: every failure, failing key and transition is
 * saved as it happens, so the breaker still needs `failureThreshold` sick calls from
 * `minFailingKeys` keys to open (a reset only makes the failure rate look higher by the
 * lost successes).
 */
export function mustSave(saved: BreakerRecord, next: BreakerRecord): boolean {
  if (
    saved.state !== next.state ||
    saved.nextProbeAt !== next.nextProbeAt ||
    saved.probeExpiresAt !== next.probeExpiresAt ||
    saved.probeId !== next.probeId ||
    saved.recoveredAt !== next.recoveredAt ||
    (saved.streak?.failures ?? 0) !== (next.streak?.failures ?? 0) ||
    saved.buckets.length !== next.buckets.length
  )
    return true;
  return next.buckets.some((bucket, i) => {
    const old = saved.buckets[i]!;
    return old.at !== bucket.at || old.failures !== bucket.failures || old.keys.length !== bucket.keys.length;
  });
}

/** A record read back from storage, or a closed breaker if it is not one of this version. */
export function parseBreakerRecord(value: unknown): BreakerRecord {
  if (typeof value !== "object" || value === null) return closedBreaker();
  const r = value as Record<string, unknown>;
  const state = r.state;
  if (r.v !== 2 || (state !== "closed" && state !== "open" && state !== "half-open")) return closedBreaker();
  // Lua's cjson writes an empty list as {}: read anything that is not a list as empty.
  const buckets = Array.isArray(r.buckets) ? (r.buckets as WindowBucket[]) : [];
  return {
    v: 2,
    state,
    nextProbeAt: Number(r.nextProbeAt) || 0,
    probeExpiresAt: Number(r.probeExpiresAt) || 0,
    probeId: typeof r.probeId === "string" ? r.probeId : "",
    ...(Number(r.recoveredAt) > 0 ? { recoveredAt: Number(r.recoveredAt) } : {}),
    ...streakOf(r.streak),
    buckets: buckets.map((b) => ({
      at: Number(b.at) || 0,
      calls: Number(b.calls) || 0,
      failures: Number(b.failures) || 0,
      keys: Array.isArray(b.keys) ? b.keys.map(String) : [],
    })),
  };
}

/** A stored streak, or none (Lua's cjson writes an empty list as {}). */
function streakOf(value: unknown): { streak?: NonNullable<BreakerRecord["streak"]> } {
  if (typeof value !== "object" || value === null) return {};
  const r = value as Record<string, unknown>;
  const failures = Number(r.failures) || 0;
  if (failures <= 0) return {};
  return { streak: { failures, keys: Array.isArray(r.keys) ? r.keys.map(String) : [], since: Number(r.since) || 0 } };
}
