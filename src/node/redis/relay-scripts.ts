import { LuaScript } from "./connection.ts";

/*
 * The fleet relay's atomic steps on a relayed answer's record (relay.ts): a Redis stream
 * `<prefix>relay:{<key>}:<id>`, its pointer `<prefix>relay:{<key>}` and its readers count,
 * all in the slot of the key's lease.
 */

/**
 * Writes the head (entry `0-1`) and points the key's waiters at it.
 * KEYS[1] pointer, KEYS[2] stream; ARGV token, id, head, ttlMs.
 */
export const OFFER = new LuaScript(`
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
 * A reader is done with the record (ARGV[1] 1), or its writer wrote the end (0): once the
 * end is written and every reader counted in is done, the record and its pointer go. A
 * record no reader took is left to its TTL: a waiter that heard of it may be about to read.
 * KEYS[1] stream, KEYS[2] readers, KEYS[3] pointer; ARGV done, pointer value.
 */
export const FINISH = new LuaScript(`
local readers = tonumber(redis.call('GET', KEYS[2]) or '-1')
if readers < 0 then return 0 end
if ARGV[1] == '1' then readers = redis.call('DECR', KEYS[2]) end
if readers > 0 then return 0 end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 or last[1][2][1] ~= 'e' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1
`);

/** The readers counted in on `stream` (TAKE), in its slot. */
export function readersKey(stream: string): string {
  return `${stream}:readers`;
}
