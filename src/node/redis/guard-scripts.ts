import { LuaScript } from "./connection.ts";

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
 * KEYS[2] breaker. ARGV: now, id, expiresAt, limit (for this priority), maxConcurrency,
 * probeTimeoutMs. Returns {1} granted, {2} granted as the probe, {0} no slot under `limit`,
 * {-1, retryAfterMs} refused by the breaker. The probe needs a free slot like any call.
 */
export const ACQUIRE = new LuaScript(`${BREAKER_LUA}
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
local b = readBreaker(KEYS[2])
if b.state == 'closed' then
  if held >= tonumber(ARGV[4]) then return {0, 0} end
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  return {1, 0}
end
local due = b.nextProbeAt
if b.state == 'half-open' then due = b.probeExpiresAt end
if now < due then return {-1, due - now} end
if held >= tonumber(ARGV[5]) then return {-1, 0} end
b.state, b.probeExpiresAt, b.probeId = 'half-open', now + tonumber(ARGV[6]), ARGV[2]
writeBreaker(KEYS[2], b)
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return {2, 0}
`);

/**
 * Frees the slot and applies breaker.ts `record`. KEYS as ACQUIRE. ARGV: id, outcome, now,
 * failureThreshold, failureRate, minFailingKeys, windowMs, probeIntervalMs, key tag.
 * Returns the breaker state ("unchanged" when the outcome moves nothing).
 */
export const RELEASE = new LuaScript(`${BREAKER_LUA}
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == 'neutral' then return 'unchanged' end
local b = readBreaker(KEYS[2])
local now = tonumber(ARGV[3])
local threshold, rate, minKeys = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local windowMs, intervalMs = tonumber(ARGV[7]), tonumber(ARGV[8])
local failure = ARGV[2] == 'failure'
if b.state ~= 'closed' then
  if b.state ~= 'half-open' or b.probeId ~= ARGV[1] then return 'unchanged' end
  if failure then
    b.state, b.nextProbeAt, b.probeExpiresAt, b.probeId = 'open', now + intervalMs, 0, ''
  else
    b = { v = 2, state = 'closed', nextProbeAt = 0, probeExpiresAt = 0, probeId = '', buckets = {} }
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
if failures >= threshold and failures >= rate * calls and distinct >= minKeys then
  b = { v = 2, state = 'open', nextProbeAt = now + intervalMs, probeExpiresAt = 0, probeId = '', buckets = {} }
else
  b.buckets = kept
end
writeBreaker(KEYS[2], b)
return b.state
`);
