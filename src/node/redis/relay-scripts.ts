import { LuaScript } from "./lua-script.ts";

/*
 * The fleet relay's atomic steps on a relayed answer's record (relay.ts): a Redis stream
 * `<prefix>relay:{<key>}:<id>`, its pointer `<prefix>relay:{<key>}` and its readers count,
 * all in the slot of the key's lease.
 */

/**
 * Writes the head (entry `0-1`) and points the key's waiters at it, unless the offer was
 * withdrawn before it ran (WITHDRAW). KEYS[1] pointer, KEYS[2] stream, KEYS[3] its withdrawn
 * mark; ARGV token, id, head, ttlMs. Returns 1, or 0 when withdrawn.
 */
export const OFFER = new LuaScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('XADD', KEYS[2], '0-1', 'h', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[4])
return 1
`);

/**
 * Appends entry `0-<n>` (a body piece `b`, or the end `e`), keeps the record and its pointer
 * alive, and wakes the followers. 0 when the record is gone (expired: nobody can read it whole).
 * KEYS[1] stream, KEYS[2] pointer; ARGV id, field, value, ttlMs, pointer value.
 */
export const APPEND = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('XADD', KEYS[1], ARGV[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if redis.call('GET', KEYS[2]) == ARGV[5] then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
`);

/**
 * Reads the head (entry `0-1`) and counts the reader in: a record goes as soon as every
 * reader counted in has finished it (FINISH). KEYS[1] stream, KEYS[2] readers; ARGV ttlMs.
 * Returns the head, or nil when the record is gone.
 */
export const TAKE = new LuaScript(`
local head = redis.call('XRANGE', KEYS[1], '0-1', '0-1')
if #head == 0 then return false end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return head[1][2][2]
`);

/**
 * A reader is done with the record (ARGV[1] 1, its id ARGV[3]: its place in the window goes),
 * or its writer wrote the end (0): once the end is written and every reader counted in is
 * done, the record and its pointer go. A record no reader took is left to its TTL: a waiter
 * that heard of it may be about to read.
 * KEYS[1] stream, KEYS[2] readers, KEYS[3] pointer, KEYS[4] places; ARGV done, pointer value, reader id.
 */
export const FINISH = new LuaScript(`
local readers = tonumber(redis.call('GET', KEYS[2]) or '-1')
if readers < 0 then return 0 end
if ARGV[1] == '1' then
  readers = redis.call('DECR', KEYS[2])
  redis.call('HDEL', KEYS[4], ARGV[3])
end
if readers > 0 then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 or last[1][2][1] ~= 'e' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1
`);

/**
 * A reader says where it is: the next entry it needs (ARGV[1], its id ARGV[2]) and when (Redis's
 * clock). One that read (ARGV[4] 1) keeps the record alive; one waiting for the next piece
 * only says it is still there (a record whose writer is gone must still expire).
 * 0 when the record is gone. KEYS[1] stream, KEYS[2] places; ARGV next, reader id, ttlMs, read.
 */
export const PLACE = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[4] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
local t = redis.call('TIME')
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1] .. ' ' .. (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`);

/**
 * Whether entry `0-<n>` (ARGV[1]) may be appended within a window of ARGV[2] body entries:
 * 1 yes, 2 not yet (a reader still needs the entry the window would drop), 0 the record is
 * gone. Entries every reader has passed are dropped, the head with the first of them: from
 * then on a waiter that comes cannot read the body from its start, so the pointer says
 * the flight streams (ARGV[5], as a body copied for nobody) and the waiter waits for its end.
 * Until the offer's grace is over (ARGV[3] 0), a reader counted in (TAKE) that has not said
 * where it is, or one still to come (a waiter that heard the announcement), needs the first
 * entry. A reader that has not moved for ARGV[7] ms holds nothing back: it is cut, as a
 * client holding back the others within one process is.
 * KEYS[1] stream, KEYS[2] readers, KEYS[3] places, KEYS[4] pointer;
 * ARGV n, window, grace over (0/1), pointer value, mark value, mark ttlMs, stall ms.
 */
export const ROOM = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
if n - 2 < window then return 1 end
local low = n
if ARGV[3] == '0' then
  local readers = tonumber(redis.call('GET', KEYS[2]) or '0')
  if readers == 0 or redis.call('HLEN', KEYS[3]) < readers then low = 2 end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, place in ipairs(redis.call('HVALS', KEYS[3])) do
  local at, seen = string.match(place, '(%d+) (%d+)')
  if at and now - tonumber(seen) < tonumber(ARGV[7]) then low = math.min(low, tonumber(at)) end
end
if n - low >= window then return 2 end
if redis.call('GET', KEYS[4]) == ARGV[4] then redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6]) end
redis.call('XTRIM', KEYS[1], 'MINID', '0-' .. low)
return 1
`);

/**
 * Undoes an offer its writer gave up on (it timed out: a stalled Redis runs it when it
 * resumes, and the key's late waiters followed a record no piece would ever reach): the
 * pointer goes if it is still this offer's, the record goes, and if the offer has not run
 * yet it is marked so that it writes nothing when it does.
 * KEYS[1] pointer, KEYS[2] stream, KEYS[3] readers, KEYS[4] places, KEYS[5] withdrawn mark;
 * ARGV pointer value, ttlMs.
 */
export const WITHDRAW = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('SET', KEYS[5], '1', 'PX', ARGV[2])
return 1
`);

/** The mark of an offer of `stream` withdrawn (WITHDRAW), in its slot. */
export function withdrawnKey(stream: string): string {
  return `${stream}:withdrawn`;
}

/** The readers counted in on `stream` (TAKE), in its slot. */
export function readersKey(stream: string): string {
  return `${stream}:readers`;
}

/** Where each reader of `stream` is (PLACE), in its slot. */
export function placesKey(stream: string): string {
  return `${stream}:at`;
}
