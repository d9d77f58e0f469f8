import { randomUUID } from "node:crypto";
import { systemClock, type Clock } from "../../core/clock.ts";
import { HerdlessError } from "../../core/errors.ts";
import type { RedisClient } from "./connection.ts";
import { LuaScript } from "./lua-script.ts";

/*
 * Redis can lose the permit set without any process losing its connection: FLUSHALL, a key
 * evicted, a proxy in front of a Redis restarted without persistence or failed over to an
 * empty replica. The processes' calls still run, and Redis no longer counts them. The guard
 * keeps a marker beside the permits, `…{guard}:epoch`, with no TTL: a script that finds it
 * missing while its caller had seen one knows Redis lost its data, writes a new one, and
 * grants no new permit until `graceUntil`, time for every holder's renewal (every second,
 * guard-renewal.ts) to write its permits back. A caller that never saw one (a process just
 * started, on a fresh deployment) creates it with no wait. Every process looks at it when
 * it starts and every second while it calls nobody (LocalShare), so it knows the marker
 * before any loss it lives through.
 */

/**
 * `epochOf(key, now, known, fresh, graceMs)` → token, graceUntil. The marker is a hash
 * {token, graceUntil}. `known` is the token the caller last saw ('' if none): a missing
 * marker with a known token is a loss, and new permits wait `graceMs`.
 */
export const EPOCH_LUA = `
local function epochOf(key, now, known, fresh, graceMs)
  local e = redis.call('HMGET', key, 'token', 'graceUntil')
  if e[1] then return e[1], tonumber(e[2]) or 0 end
  local graceUntil = 0
  if known ~= '' then graceUntil = now + graceMs end
  redis.call('HSET', key, 'token', fresh, 'graceUntil', string.format('%.0f', graceUntil))
  return fresh, graceUntil
end
`;

/**
 * Losses this close together ({@link REPEATED_LOSSES} of them) say Redis does not keep the
 * guard's data at all: a Redis at its `maxmemory` with a policy that evicts (`allkeys-*`)
 * takes the marker again at nearly every write, and each loss held new permits back for the
 * wait, fleet-wide, so every miss queued until `origin.queueTimeoutMs` and got a `503`, the
 * origin asked nothing (measured: `maxmemory 1mb`, `allkeys-lru`: 0 origin requests, every
 * miss a `503` for as long as it lasted). Then the process keeps to its share of the cap, as
 * without Redis, for {@link UNKEPT_MS} after the last such run.
 */
const REPEATED_LOSSES = 3;
const REPEATED_WITHIN_MS = 10_000;
const UNKEPT_MS = 30_000;

/**
 * What a process knows of the data in Redis: the epoch token it last saw. Every guard script
 * takes it and hands back the current one, with the end of the wait after the last loss.
 *
 * @example
 * const epoch = new FleetEpoch(lossGraceMs(ttlMs), (graceUntil) => leases.reassert(graceUntil));
 * const reply = await script.run(client, keys, [...epoch.args(now)]); epoch.saw(reply[0], reply[1]);
 */
export class FleetEpoch {
  private known = "";
  /** When the last losses were seen (at most {@link REPEATED_LOSSES}), and until when Redis counts as not keeping data. */
  private readonly lossesAt: number[] = [];
  private unkeptUntil = -Infinity;

  /**
   * `graceMs`: how long new permits wait after a loss (guard-renewal.ts lossGraceMs).
   * `onLoss`: told once per loss this process sees (a token other than the one it knew), with
   * the end of that wait (epoch ms, 0 when there is none): the keys' leases of the fills this
   * process runs went with the data (lease.ts reassert).
   */
  constructor(
    private readonly graceMs: number,
    private readonly onLoss?: (graceUntil: number) => void | Promise<void>,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Whether Redis keeps the guard's data: false while it loses it again and again (see {@link REPEATED_LOSSES}). */
  keeps(now: number): boolean {
    return now >= this.unkeptUntil;
  }

  /** The error that sends this process's calls to its share of the cap while Redis does not keep the guard's data. */
  unkept(): HerdlessError {
    return new HerdlessError(
      "COORDINATOR_UNAVAILABLE",
      "redis keeps losing the origin guard's keys (evicted by its maxmemory-policy?): this process keeps to its share of the cap",
    );
  }

  /** The script's ARGV for epochOf: now, the known token, a fresh one in case it is missing, graceMs. */
  args(now: number): [number, string, string, number] {
    return [now, this.known, randomUUID(), this.graceMs];
  }

  /**
   * Takes the token a script or a read reported (ignored when empty: the marker was missing)
   * and the marker's graceUntil. When the token shows a loss, tells {@link onLoss} and returns
   * its work (never rejecting); otherwise undefined.
   */
  saw(reported: unknown, graceUntil?: unknown): Promise<void> | undefined {
    const token = Buffer.isBuffer(reported) ? reported.toString() : reported;
    if (typeof token !== "string" || token === "" || token === this.known) return undefined;
    const lost = this.known !== "";
    this.known = token;
    if (lost) this.counted(this.clock.now());
    if (!lost || !this.onLoss) return undefined;
    const onLoss = this.onLoss;
    return Promise.resolve()
      .then(() => onLoss(Number(graceUntil) || 0))
      .catch(() => undefined);
  }

  private counted(now: number): void {
    this.lossesAt.push(now);
    if (this.lossesAt.length > REPEATED_LOSSES) this.lossesAt.shift();
    const first = this.lossesAt[0]!;
    if (this.lossesAt.length === REPEATED_LOSSES && now - first <= REPEATED_WITHIN_MS)
      this.unkeptUntil = now + UNKEPT_MS;
  }
}

/**
 * Extends the permits a process holds and writes back those Redis lost, while the cap has
 * room for them. KEYS[1] permits, KEYS[2] epoch. ARGV: now, known, fresh, graceMs (epochOf),
 * expiresAt, maxConcurrency, then the ids, oldest first. A permit still live is extended; one
 * gone (or past its expiry, its slot maybe counted by another) is added back while fewer than
 * maxConcurrency are live. Returns {token, graceUntil, ids that found no room...}.
 *
 * Adding back during a grace is within the cap: no new permit was granted since the loss, and
 * the permits held before it were at most maxConcurrency.
 */
const RENEW = new LuaScript(`${EPOCH_LUA}
local now = tonumber(ARGV[1])
local token, graceUntil = epochOf(KEYS[2], now, ARGV[2], ARGV[3], tonumber(ARGV[4]))
local max = tonumber(ARGV[6])
local live = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
local reply = {token, graceUntil}
for i = 7, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[1], ARGV[5], ARGV[i])
  elseif live < max then
    redis.call('ZADD', KEYS[1], ARGV[5], ARGV[i])
    live = live + 1
  else
    table.insert(reply, ARGV[i])
  end
end
return reply
`);

/** The keys of the guard's permits and their epoch marker (one slot, hash tag `{guard}`). */
export interface EpochKeys {
  permits: string;
  epoch: string;
}

/** The guard's keys (one slot, hash tag `{guard}`). */
export interface GuardKeys extends EpochKeys {
  breaker: string;
}

/** Renews the permits `ids` (see RENEW); returns the ids that are lost (no room for them). */
export async function renewPermits(
  client: RedisClient,
  keys: EpochKeys,
  epoch: FleetEpoch,
  r: { now: number; expiresAt: number; maxConcurrency: number; ids: string[] },
): Promise<string[]> {
  const reply = await RENEW.run(
    client,
    [keys.permits, keys.epoch],
    [...epoch.args(r.now), r.expiresAt, r.maxConcurrency, ...r.ids],
  );
  const [token, graceUntil, ...lost] = Array.isArray(reply) ? (reply as unknown[]) : [];
  void epoch.saw(token, graceUntil);
  return lost.map(String);
}

/**
 * The rejoin's write (Redis answers again after this process lost it): takes out the permits
 * released meanwhile and writes back every one held. A missing marker is created with no
 * grace: after a reconnect every process writes its own back before it admits (LocalShare).
 * A released permit that is the breaker's probe (its outcome unheard, or granted after its
 * process gave up on the request: it called nobody) reopens the breaker with the probe due
 * now, rather than holding it half-open until the probe would lapse.
 * KEYS[1] permits, KEYS[2] epoch, KEYS[3] breaker; ARGV: fresh token, expiresAt, count of
 * released, released ids, held ids. Returns {token, graceUntil}.
 */
const REGISTER = new LuaScript(`${EPOCH_LUA}
local token, graceUntil = epochOf(KEYS[2], 0, '', ARGV[1], 0)
local released = tonumber(ARGV[3])
local raw = released > 0 and redis.call('GET', KEYS[3])
local ok, b = pcall(cjson.decode, raw or '')
for i = 4, 3 + released do
  redis.call('ZREM', KEYS[1], ARGV[i])
  if ok and type(b) == 'table' and b.state == 'half-open' and b.probeId == ARGV[i] then
    b.state, b.probeExpiresAt, b.probeId = 'open', 0, ''
    redis.call('SET', KEYS[3], cjson.encode(b))
  end
end
for i = 4 + released, #ARGV do redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i]) end
return {token, graceUntil}
`);

/** Writes back `held` and takes out `released` (see REGISTER). */
export async function registerPermits(
  client: RedisClient,
  keys: GuardKeys,
  epoch: FleetEpoch,
  r: { expiresAt: number; released: string[]; held: string[] },
): Promise<void> {
  const [, , fresh] = epoch.args(0);
  const args = [fresh, r.expiresAt, r.released.length, ...r.released, ...r.held];
  void sawReply(epoch, await REGISTER.run(client, [keys.permits, keys.epoch, keys.breaker], args));
}

/** epochOf alone. KEYS[1] epoch; ARGV as epochOf's. Returns {token, graceUntil}. */
const LOOK = new LuaScript(`${EPOCH_LUA}
local token, graceUntil = epochOf(KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]))
return {token, graceUntil}
`);

/**
 * The marker's token, for a process that calls nobody: it knows the marker from its start,
 * and sees a loss (creating the marker anew, with the wait) without calling anybody. Returns
 * the work of FleetEpoch's onLoss when this look saw a loss.
 */
export async function lookAtEpoch(
  client: RedisClient,
  epochKey: string,
  epoch: FleetEpoch,
  now: number,
): Promise<Promise<void> | undefined> {
  return sawReply(epoch, await LOOK.run(client, [epochKey], epoch.args(now)));
}

/** A `{token, graceUntil}` reply, told to `epoch` (FleetEpoch.saw). */
function sawReply(epoch: FleetEpoch, reply: unknown): Promise<void> | undefined {
  const [token, graceUntil] = Array.isArray(reply) ? (reply as unknown[]) : [];
  return epoch.saw(token, graceUntil);
}
