import {
  closedBreaker,
  keyTag,
  parseBreakerRecord,
  type BreakerRecord,
  type BreakerSettings,
} from "../../core/guard/breaker.ts";
import type { Config } from "../../core/config.ts";
import { breakerSettings } from "../../core/guard/local-guard.ts";
import type { GuardSnapshot, OriginOutcome, Priority } from "../../core/guard/origin-guard.ts";
import type { RedisClient } from "./connection.ts";
import { LuaScript } from "./lua-script.ts";
import { EPOCH_LUA, type FleetEpoch, type GuardKeys } from "./guard-epoch.ts";

/*
 * The fleet guard's atomic steps: breaker.ts's transitions, re-stated in Lua so that a
 * permit and the breaker move together in one Redis call. Keep both in step with breaker.ts.
 */

/** Reads and writes the BreakerRecord JSON of breaker.ts (v 2), so every runtime reads the same record. */
const BREAKER_LUA = `
local function readBreaker(key)
  local raw = redis.call('GET', key)
  if raw then
    local ok, b = pcall(cjson.decode, raw)
    if ok and type(b) == 'table' and b.v == 2 then
      if type(b.buckets) ~= 'table' then b.buckets = {} end
      if type(b.probeId) ~= 'string' then b.probeId = '' end
      return b
    end
  end
  return { v = 2, state = 'closed', nextProbeAt = 0, probeExpiresAt = 0, probeId = '', buckets = {} }
end
local function writeBreaker(key, b)
  redis.call('SET', key, cjson.encode(b))
end
`;

/**
 * breaker.ts `admit` plus a slot, in one step. KEYS[1] permits (zset: id → expiresAt),
 * KEYS[2] breaker, KEYS[3] epoch (guard-epoch.ts). ARGV: now, id, expiresAt, limit (for this
 * priority), maxConcurrency, probeTimeoutMs, owner (the caller's permit id prefix), then
 * known, fresh, graceMs (epochOf). Returns {1} granted, {2} granted as the probe, {0} no slot
 * under `limit` (or none yet: Redis lost its data and the holders are writing theirs back),
 * {-1, retryAfterMs} refused by the breaker; the third element is how many live permits other
 * processes hold, the fourth the epoch token, the fifth its graceUntil. The probe needs a free slot like any call.
 */
const ACQUIRE = new LuaScript(`${BREAKER_LUA}${EPOCH_LUA}
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local held, others = #ids, 0
for _, id in ipairs(ids) do
  if string.sub(id, 1, #ARGV[7]) ~= ARGV[7] then others = others + 1 end
end
local token, graceUntil = epochOf(KEYS[3], now, ARGV[8], ARGV[9], tonumber(ARGV[10]))
if now < graceUntil then return {0, 0, others, token, graceUntil} end
local b = readBreaker(KEYS[2])
if b.state == 'closed' then
  if held >= tonumber(ARGV[4]) then return {0, 0, others, token, graceUntil} end
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  return {1, 0, others, token, graceUntil}
end
local due = b.nextProbeAt
if b.state == 'half-open' then due = b.probeExpiresAt end
if now < due then return {-1, due - now, others, token, graceUntil} end
if held >= tonumber(ARGV[5]) then return {-1, 0, others, token, graceUntil} end
b.state, b.probeExpiresAt, b.probeId = 'half-open', now + tonumber(ARGV[6]), ARGV[2]
writeBreaker(KEYS[2], b)
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return {2, 0, others, token, graceUntil}
`);

/**
 * Frees the slot and applies breaker.ts `record`. KEYS as ACQUIRE. ARGV: id, outcome, now,
 * failureThreshold, failureRate, minFailingKeys, windowMs, probeIntervalMs, key tag.
 * Returns the breaker state ("unchanged" when the outcome moves nothing).
 */
const RELEASE = new LuaScript(`${BREAKER_LUA}
redis.call('ZREM', KEYS[1], ARGV[1])
local neutral = ARGV[2] == 'neutral'
local b = readBreaker(KEYS[2])
local now = tonumber(ARGV[3])
local threshold, rate, minKeys = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local windowMs, intervalMs = tonumber(ARGV[7]), tonumber(ARGV[8])
local failure = ARGV[2] == 'failure'
if neutral and (b.state ~= 'half-open' or b.probeId ~= ARGV[1]) then return 'unchanged' end
if b.state ~= 'closed' then
  if b.state ~= 'half-open' or b.probeId ~= ARGV[1] then return 'unchanged' end
  if failure then
    b.state, b.nextProbeAt, b.probeExpiresAt, b.probeId = 'open', now + intervalMs, 0, ''
  elseif neutral then
    b.state, b.nextProbeAt, b.probeExpiresAt, b.probeId = 'open', math.min(now + intervalMs, b.probeExpiresAt), 0, ''
  else
    b = { v = 2, state = 'closed', nextProbeAt = 0, probeExpiresAt = 0, probeId = '', buckets = {}, recoveredAt = now }
  end
  writeBreaker(KEYS[2], b)
  return b.state
end
local sliceMs = math.max(1, math.floor(windowMs / 10))
local at = now - (now % sliceMs)
local kept, slice = {}, nil
for _, bk in ipairs(b.buckets) do
  if bk.at > now - windowMs then
    table.insert(kept, bk)
    if bk.at == at then slice = bk end
  end
end
if not slice then
  slice = { at = at, calls = 0, failures = 0, keys = {} }
  table.insert(kept, slice)
end
if type(slice.keys) ~= 'table' then slice.keys = {} end
slice.calls = slice.calls + 1
if failure then
  slice.failures = slice.failures + 1
  local seen = false
  for _, t in ipairs(slice.keys) do if t == ARGV[9] then seen = true end end
  if not seen and #slice.keys < minKeys then table.insert(slice.keys, ARGV[9]) end
end
local calls, failures, distinct, tags = 0, 0, 0, {}
for _, bk in ipairs(kept) do
  calls, failures = calls + bk.calls, failures + bk.failures
  if type(bk.keys) == 'table' then
    for _, t in ipairs(bk.keys) do
      if not tags[t] then tags[t] = true; distinct = distinct + 1 end
    end
  end
end
-- The run of sick calls no call proving the origin up has interrupted (breaker.ts lengthened).
local streak = nil
if failure then
  streak = type(b.streak) == 'table' and b.streak or nil
  if not streak or now - (tonumber(streak.since) or 0) > windowMs then streak = { failures = 0, keys = {}, since = now } end
  if type(streak.keys) ~= 'table' then streak.keys = {} end
  streak.failures = (tonumber(streak.failures) or 0) + 1
  local known = false
  for _, t in ipairs(streak.keys) do if t == ARGV[9] then known = true end end
  if not known and #streak.keys < minKeys then table.insert(streak.keys, ARGV[9]) end
end
local run = streak ~= nil and streak.failures >= threshold and #streak.keys >= minKeys
  and now - (tonumber(streak.since) or now) >= intervalMs
if (failures >= threshold and failures >= rate * calls and distinct >= minKeys) or run then
  b = { v = 2, state = 'open', nextProbeAt = now + intervalMs, probeExpiresAt = 0, probeId = '', buckets = {} }
else
  b.buckets = kept
  b.streak = streak
end
writeBreaker(KEYS[2], b)
return b.state
`);

/** What a try for a slot came to, and how many permits other processes held then. */
export type Attempt = { others: number } & (
  { kind: "granted"; id: string; probe: boolean } | { kind: "busy" } | { kind: "refused"; retryAfterMs: number }
);

/**
 * Tries for a slot of the fleet's cap (see ACQUIRE): the permit `id` (`${owner}${n}`) is added
 * when granted. A background call may take all but one slot (one stays for foreground misses).
 */
export async function acquirePermit(
  client: RedisClient,
  keys: GuardKeys,
  p: { owner: string; id: string; now: number; expiresAt: number; priority: Priority; epoch: FleetEpoch },
  config: Config,
): Promise<Attempt> {
  const { maxConcurrency } = config.origin;
  // The probe's term: the longest call any route may make (breakerSettings).
  const { probeTimeoutMs } = breakerSettings(config);
  const limit = p.priority === "foreground" ? maxConcurrency : Math.max(1, maxConcurrency - 1);
  const [, known, fresh, graceMs] = p.epoch.args(p.now);
  const reply = await ACQUIRE.run(
    client,
    [keys.permits, keys.breaker, keys.epoch],
    [p.now, p.id, p.expiresAt, limit, maxConcurrency, probeTimeoutMs, p.owner, known, fresh, graceMs],
  );
  const parts: unknown[] = Array.isArray(reply) ? reply : [];
  void p.epoch.saw(parts[3], parts[4]);
  const [code, retryAfterMs, others] = parts.slice(0, 3).map(Number);
  const seen = { others: others ?? 0 };
  if (code === 1 || code === 2) return { ...seen, kind: "granted", id: p.id, probe: code === 2 };
  if (code === -1) return { ...seen, kind: "refused", retryAfterMs: retryAfterMs ?? 0 };
  return { ...seen, kind: "busy" };
}

/** How many live permits (at `now`) processes other than `owner` hold. */
export async function othersPermits(
  client: RedisClient,
  permitsKey: string,
  owner: string,
  now: number,
): Promise<number> {
  const ids = await client.zrangebyscore(permitsKey, `(${now}`, "+inf");
  return ids.filter((id) => !id.startsWith(owner)).length;
}

/** Frees permit `id` and counts its outcome for `key` in the shared breaker (see RELEASE). */
export async function releasePermit(
  client: RedisClient,
  keys: GuardKeys,
  r: { id: string; outcome: OriginOutcome; key: string; now: number; settings: BreakerSettings },
): Promise<void> {
  const b = r.settings;
  await RELEASE.run(
    client,
    [keys.permits, keys.breaker],
    [
      r.id,
      r.outcome,
      r.now,
      b.failureThreshold,
      b.failureRate,
      b.minFailingKeys,
      b.windowMs,
      b.probeIntervalMs,
      keyTag(r.key),
    ],
  );
}

/** The permits live at `now` and the breaker's state, as the guard's snapshot reports them. */
export async function readGuard(
  client: RedisClient,
  keys: GuardKeys,
  now: number,
): Promise<Pick<GuardSnapshot, "inFlight" | "breaker" | "recoveredAt">> {
  const [inFlight, raw] = await Promise.all([client.zcount(keys.permits, `(${now}`, "+inf"), client.get(keys.breaker)]);
  const { state, recoveredAt } = parseBreaker(raw);
  return { inFlight, breaker: state, ...(recoveredAt !== undefined ? { recoveredAt } : {}) };
}

function parseBreaker(raw: string | null): BreakerRecord {
  if (raw === null) return closedBreaker();
  try {
    return parseBreakerRecord(JSON.parse(raw));
  } catch {
    return closedBreaker();
  }
}
