import { LuaScript } from "./redis-connection.ts";

/*
 * The fleet guard's atomic steps: breaker.ts's transitions, re-stated in Lua so that a
 * permit and the breaker move together in one Redis call. Keep both in step with breaker.ts.
 */

/** Reads and writes the BreakerRecord JSON of breaker.ts, so every runtime reads the same record. */
const BREAKER_LUA = `
local function readBreaker(key)
  local raw = redis.call('GET', key)
  if raw then
    local ok, b = pcall(cjson.decode, raw)
    if ok and type(b) == 'table' and b.v == 1 then return b end
  end
  return { v = 1, state = 'closed', consecutiveFailures = 0, nextProbeAt = 0, probeExpiresAt = 0 }
end
local function writeBreaker(key, b)
  redis.call('SET', key, string.format('{"v":1,"state":"%s","consecutiveFailures":%d,"nextProbeAt":%.0f,"probeExpiresAt":%.0f}',
    b.state, b.consecutiveFailures, b.nextProbeAt, b.probeExpiresAt))
end
local function reopen(b, now, intervalMs)
  b.state, b.nextProbeAt, b.probeExpiresAt = 'open', now + intervalMs, 0
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
b.state, b.probeExpiresAt = 'half-open', now + tonumber(ARGV[6])
writeBreaker(KEYS[2], b)
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return {2, 0}
`);

/**
 * Frees the slot and applies breaker.ts `record`. KEYS as ACQUIRE. ARGV: id, outcome,
 * probe ("1" | "0"), now, failureThreshold, probeIntervalMs. Returns the breaker state
 * ("unchanged" for a neutral outcome, which frees the slot and counts nothing).
 */
export const RELEASE = new LuaScript(`${BREAKER_LUA}
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] == 'neutral' then return 'unchanged' end
local b = readBreaker(KEYS[2])
local now = tonumber(ARGV[4])
local probe = ARGV[3] == '1'
if ARGV[2] == 'success' then
  if b.state ~= 'closed' and not probe then return b.state end
  if b.state == 'closed' and b.consecutiveFailures == 0 then return 'closed' end
  b = { state = 'closed', consecutiveFailures = 0, nextProbeAt = 0, probeExpiresAt = 0 }
elseif probe and b.state ~= 'closed' then
  reopen(b, now, tonumber(ARGV[6]))
else
  b.consecutiveFailures = b.consecutiveFailures + 1
  if b.state == 'closed' and b.consecutiveFailures >= tonumber(ARGV[5]) then reopen(b, now, tonumber(ARGV[6])) end
end
writeBreaker(KEYS[2], b)
return b.state
`);
