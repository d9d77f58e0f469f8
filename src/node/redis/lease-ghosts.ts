import { randomUUID } from "node:crypto";
import type { RedisClient } from "./connection.ts";
import { LuaScript } from "./lua-script.ts";

/*
 * A command that timed out is not undone: Redis stalled (a fork for BGSAVE, a slow fsync, a
 * long script, SIGSTOP) with it in the socket, the caller gave up (COORDINATOR_UNAVAILABLE)
 * and dropped the connection, and Redis runs it when it resumes. An acquire run that way took
 * the key's lease for a token drawn inside the script, which nobody knows: nobody released
 * it, and every member's request for the key waited on it for the whole lease
 * (`coordinator.lockLeaseMs`, 15 s by default). So each acquire carries a nonce, stored with
 * what it takes (the key's `claim`); the caller remembers the nonce of an acquire that may
 * have run, and once Redis answers again drops what it took (DROP), or, if it has not run
 * yet, leaves a mark (`dropped`) that makes it take nothing when it does.
 */

/**
 * Takes the lease only when free, and draws the token only then: a refused acquire does
 * not burn a token. The counter has no TTL, and it never falls below Redis's clock in
 * epoch milliseconds, so tokens keep increasing even after a Redis restart or flush empties
 * the counter: entries written before the restart (still in processes' LRUs, with their
 * tokens) never fence out the writes that follow it. Milliseconds, like the in-process
 * lease manager's floor: while Redis is down a process's local fallback writes with its
 * own tokens, and must be able to replace what the fleet wrote before.
 * KEYS[1] lease, KEYS[2] fence counter, KEYS[3] claim, KEYS[4] this nonce's dropped mark;
 * ARGV[1] ttlMs, ARGV[2] fence ttlMs, ARGV[3] nonce. Returns the token, or 0.
 */
export const ACQUIRE = new LuaScript(`
if redis.call('EXISTS', KEYS[1], KEYS[4]) > 0 then return 0 end
local time = redis.call('TIME')
local floor = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local token = redis.call('INCR', KEYS[2])
if token < floor then
  token = floor
  redis.call('SET', KEYS[2], string.format('%.0f', token))
end
local held = string.format('%.0f', token)
redis.call('SET', KEYS[1], held, 'NX', 'PX', ARGV[1])
redis.call('SET', KEYS[3], ARGV[3] .. ':' .. held, 'PX', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return token
`);

/**
 * Undoes the acquire of nonce ARGV[1]: frees the lease when that acquire holds it (its claim
 * names the nonce and the lease's token: a lease written back over it since is another's),
 * else marks the nonce dropped for ARGV[2] ms, so that the acquire, if it has not run yet,
 * takes nothing. KEYS[1] lease, KEYS[2] refresh-ahead mark, KEYS[3] claim, KEYS[4] dropped
 * mark. Returns 1 when it freed the lease.
 */
const DROP = new LuaScript(`
local held = redis.call('GET', KEYS[1])
if held and redis.call('GET', KEYS[3]) == ARGV[1] .. ':' .. held then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  return 1
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
return 0
`);

/** The keys DROP needs, in the key's slot. */
export interface GhostKeys {
  lease: string;
  mark: string;
  claim: string;
  dropped: string;
}

/** One acquire that may run after its caller gave up on it. */
export interface Ghost {
  key: string;
  nonce: string;
  ttlMs: number;
}

/** Nonces for acquires: unique per process and call, short. */
export class Nonces {
  private readonly prefix = randomUUID().slice(0, 13);
  private n = 0;
  next(): string {
    return `${this.prefix}${(++this.n).toString(36)}`;
  }
}

/** Runs DROP for `ghost`; true when it freed a lease the acquire had taken. */
export async function dropGhost(client: RedisClient, keys: GhostKeys, ghost: Ghost): Promise<boolean> {
  const freed = await DROP.run(
    client,
    [keys.lease, keys.mark, keys.claim, keys.dropped],
    [ghost.nonce, Math.ceil(ghost.ttlMs)],
  );
  return freed === 1;
}
