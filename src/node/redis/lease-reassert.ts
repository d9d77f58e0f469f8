import type { RedisClient } from "./connection.ts";
import { LuaScript } from "./lua-script.ts";

/*
 * Redis can lose a key's lease while its fill runs (FLUSHALL, a restart or failover to an
 * empty replica): another process then takes the key and starts a second origin request for
 * it, and the first fill's next extend finds its lease gone and cuts the body it streams.
 * The guard sees the loss (guard-epoch.ts) and, for a while after it (`graceUntil`), grants
 * no new origin permit anywhere: a fill that took a key after the loss cannot have reached
 * the origin yet. So a process that sees the loss writes back the leases of its own fills,
 * over a holder whose token is newer than its own, while that wait lasts; that holder finds
 * its lease taken when its permit comes, and waits on this fill instead (held-flight.ts).
 */

/**
 * Compare-and-set: only the holder of ARGV[1] may push its lease out. A lease that is gone
 * (Redis lost its data; nobody took it since) is its holder's again: reporting it lost cut the
 * body the flight was streaming to its clients. KEYS[1] lease, KEYS[2] mark; ARGV token, ttlMs.
 */
export const EXTEND = new LuaScript(`
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if held then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`);

/**
 * KEYS[1] lease, KEYS[2] fence, KEYS[3] refresh-ahead mark; ARGV: token, ttlMs, over ('1':
 * also over a newer holder), fence ttlMs, renews ('' when unmarked). Takes the lease back when
 * it is gone, or held under a newer token and `over`; never from an older holder (another
 * fill that ran before the loss and writes its own back: the older one keeps it). Raises the
 * fence to the token. Returns 1 when the lease is the caller's, else 0.
 */
const REASSERT = new LuaScript(`
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then
  if held and (ARGV[3] ~= '1' or tonumber(held) <= tonumber(ARGV[1])) then return 0 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('DEL', KEYS[3])
end
local ttl = redis.call('PTTL', KEYS[1])
if ARGV[5] ~= '' and ttl > 0 then redis.call('SET', KEYS[3], ARGV[5], 'PX', ttl) end
local fence = tonumber(redis.call('GET', KEYS[2])) or 0
if fence < tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[1]) end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
`);

/**
 * How long before the end of the wait after a loss a lease may still be taken from a newer
 * holder: the write must land before that holder's permit can be granted (on its process's
 * clock), across a loaded machine and clocks a little apart.
 */
export const REASSERT_MARGIN_MS = 250;

/** The keys of one lease (one slot: the key's hash tag). */
export interface LeaseKeys {
  lease: string;
  fence: string;
  mark: string;
}

/**
 * Writes back one lease (see REASSERT); true when it is the holder's afterwards. Sent on the
 * connection before the fill's release, it runs before it: a script is never sent again
 * behind later commands (lua-script.ts), so a released lease is never taken back.
 */
export async function reassertLease(
  client: RedisClient,
  keys: LeaseKeys,
  r: { token: number; ttlMs: number; overNewer: boolean; fenceTtlMs: number; renews: number | undefined },
): Promise<boolean> {
  const args = [String(r.token), Math.ceil(r.ttlMs), r.overNewer ? "1" : "0", r.fenceTtlMs, r.renews ?? ""];
  return (await REASSERT.run(client, [keys.lease, keys.fence, keys.mark], args)) === 1;
}
