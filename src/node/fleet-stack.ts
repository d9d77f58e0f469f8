import { systemClock } from "../core/clock.ts";
import type { Coordinator } from "../core/fill/coordinator.ts";
import { Engine } from "../core/engine.ts";
import { HerdlessError } from "../core/errors.ts";
import { KeyCoordinator, type KeyCoordinatorOptions } from "../core/fill/key-coordinator.ts";
import { LocalGuard } from "../core/guard/local-guard.ts";
import { MemoryLeaseManager } from "../core/fill/memory-lease.ts";
import { Metrics } from "../core/admin/metrics.ts";
import { purgeKeyOf } from "../core/admin/purge.ts";
import { LruStore } from "../core/store/lru-store.ts";
import { untilClosed } from "./closing-fallback.ts";
import { RedisConnection } from "./redis/connection.ts";
import { RedisGuard } from "./redis/guard.ts";
import { RedisLeaseManager } from "./redis/lease.ts";
import { RedisBackoffStore } from "./redis/backoff-store.ts";
import { FleetMembers } from "./redis/members.ts";
import { FleetInvalidations } from "./redis/invalidations.ts";
import { RedisNotifier } from "./redis/notifier.ts";
import { RedisPurgeRegistry } from "./redis/purge.ts";
import { RedisFlightRelay, type RedisFlightRelayOptions } from "./redis/relay.ts";
import type { Config } from "../core/config.ts";
import { ASK_AGAIN, STREAMING } from "../core/fill/relay.ts";
import { fillNews, heardFrom } from "./redis/fill-news.ts";
import { RedisStore } from "./redis/store.ts";
import { sharedReads } from "./redis/shared-reads.ts";
import { sharedMaxBytes } from "./redis/store-bound.ts";
import { checkMemoryPolicyOnce } from "./redis/eviction-policy.ts";
import { checkFleetConfig } from "./redis/fleet-config.ts";
import type { RedisTarget } from "./redis/target.ts";
import { originCall, originCallListener, waitingRequests, type Stack, type StackOptions } from "./stack.ts";

/** How long one chunk command (a 1 MiB write, a 4 MiB read) may take before the body counts as unreadable. */
const BULK_COMMAND_TIMEOUT_MS = 10_000;

export interface FleetStackOptions extends StackOptions {
  /** One Redis URL, a `redis+sentinel://` URL or a Cluster node list (see parseRedisTarget). */
  redisUrl?: string;
  /** The target already parsed (the config file's `redis` block); wins over `redisUrl`. */
  redis?: RedisTarget;
  /** Namespace in Redis; every process of one deployment uses the same. */
  prefix?: string;
}

/** A fleet member's {@link Stack}, and when the shared tier has accounted for its writes. */
export interface FleetStack extends Stack {
  /** Resolves once the shared tier's bound recorded every write and delete so far (RedisStore.settled). */
  settled(): Promise<void>;
}

/**
 * A fleet member: the LRU is this process's near tier; Redis holds the shared entries, the
 * key leases and the fill announcements, so one process in the fleet fetches each key.
 * While Redis is unreachable, every call to the shared coordinator fails fast and the
 * engine falls back to local single-flight over the LRU; it reports the degradation and
 * returns to Redis on its own when Redis answers again.
 */
export async function redisStack(options: FleetStackOptions): Promise<FleetStack> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const { fetch, decodes } = originCall(options);
  const prefix = options.prefix ?? `herdless:${config.cache.name}:`;
  const metrics = new Metrics(clock, options.latencyTimer);
  const connection = await connectRedis(options);
  const near = new LruStore({ maxBytes: config.cache.maxBytes, clock });
  const members = new FleetMembers({
    connection,
    prefix,
    clock,
    onError: (error) => logger.debug("fleet heartbeat failed", { error: String(error) }),
  });
  await members.start();
  void checkFleetConfig({ connection, prefix, members, config, logger });
  // Bodies travel on a connection of their own, with time for megabytes on a loaded machine.
  const bulk = connection.duplicate({ commandTimeoutMs: BULK_COMMAND_TIMEOUT_MS });
  const shared = sharedTier(options, connection, bulk, prefix);
  const notifier = new RedisNotifier({ connection, prefix });
  const { leases, guard } = leasesAndGuard(options, { connection, members, shared, notifier }, prefix);
  const purges = new RedisPurgeRegistry({
    ...{ connection, prefix, clock, members },
    keyOf: purgeKeyOf(config, true),
    propagationMs: config.admin.purgePropagationMs,
    onError: (error) => logger.debug("purge list not refreshed", { error: String(error) }),
  });
  await purges.start();
  const background = (work: Promise<unknown>) =>
    void work.catch((error: unknown) => logger.warn("background work failed", { error: String(error) }));
  const onOriginCall = originCallListener(metrics, logger);

  // The fleet guard throughout: without Redis it admits within this process's share.
  const parts = { guard, background, onOriginCall, ...originCall(options) };
  const invalidations = new FleetInvalidations({
    notifier,
    near,
    shared,
    clock,
    onError: (error) => logger.debug("invalidation not applied", { error: String(error) }),
  });
  const links = { connection, bulk, notifier, invalidations, leases };
  const coordinator = fleetCoordinator(options, links, prefix, shared, parts);
  const fallback = untilClosed(
    new KeyCoordinator({ config, clock, store: near, leases: new MemoryLeaseManager(clock), ...parts }),
  );
  const engine = new Engine({
    ...{ config, clock, near, shared: sharedReads(shared, connection, logger) },
    ...{ coordinator, fallback, guard, fetch, background, metrics, onOriginCall },
    ...(decodes ? { decodes } : {}),
    purges: () => purges.current(),
    waiting: waitingRequests(config),
  });
  return {
    ...{ config, clock, engine, near, guard, metrics, purges },
    startedAt: clock.now(),
    mode: () => (connection.healthy ? "redis" : "degraded"),
    settled: () => shared.settled(),
    close: async () => {
      fallback.close();
      purges.stop();
      invalidations.stop();
      await members.stop();
      guard.close();
      await coordinator.close();
      // The shared tier's last records, or the entries written last go uncounted.
      await shared.settled();
      await bulk.close();
      await connection.close();
    },
  };
}

/** The shared tier in Redis, within cache.sharedMaxBytes. */
function sharedTier(options: FleetStackOptions, connection: RedisConnection, bulk: RedisConnection, prefix: string) {
  const { config, logger } = options;
  const maxBytes = sharedMaxBytes(config);
  return new RedisStore({
    ...{ connection, bulk, prefix, clock: options.clock ?? systemClock, maxBytes },
    // Unrecorded, an entry is not counted against cache.sharedMaxBytes until its physical TTL.
    onBoundError: (error) =>
      logger.warn("shared tier write not counted in cache.sharedMaxBytes", { error: String(error) }),
  });
}

/** The shared connection, logging each change of Redis's health; serving starts even when Redis is down. */
async function connectRedis(options: FleetStackOptions): Promise<RedisConnection> {
  const { logger } = options;
  const connection = new RedisConnection({ url: options.redisUrl, target: options.redis });
  const where = connection.describe();
  connection.onHealthChange((healthy) =>
    healthy
      ? logger.info("redis reachable: fleet coordination on", { redis: where })
      : logger.warn("redis unreachable: local single-flight until it returns", {
          redis: where,
          // A connection Redis closed cleanly has no error to name: no empty "error" then.
          ...(connection.lastError ? { error: String(connection.lastError) } : {}),
        }),
  );
  await connection
    .ready()
    .catch(() => logger.warn("redis not reachable at start: serving with local single-flight", { redis: where }));
  // A Redis that may evict the leases breaks the promises however herdless bounds its entries.
  await checkMemoryPolicyOnce(connection, logger, sharedMaxBytes(options.config));
  return connection;
}

/**
 * The keys' leases, and the cap and the breaker, fleet-wide: while Redis is away each process
 * keeps to its share of the cap, so the fleet together stays under it. Each tells the other of
 * Redis losing its data: the guard sees it, the leases of this process's fills are written back.
 */
function leasesAndGuard(
  options: FleetStackOptions,
  links: { connection: RedisConnection; members: FleetMembers; shared: RedisStore; notifier: RedisNotifier },
  prefix: string,
): { leases: RedisLeaseManager; guard: RedisGuard } {
  const { connection, members, shared, notifier } = links;
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  // One Redis runs a connection's commands in order: a read sent after an acquire is answered after it.
  const ordered = connection.target.kind !== "cluster";
  const leases: RedisLeaseManager = new RedisLeaseManager({
    ...{ connection, prefix, clock, lookForLoss: (): Promise<void> => guard.lookForLoss() },
    ...(ordered ? { onAcquire: () => shared.cutReads() } : {}),
    // Those who waited on a lease freed once Redis answered again (a ghost's, a failed release's) ask again.
    onFreedLate: (key) => void notifier.publish(key, ASK_AGAIN).catch(() => 0),
  });
  const share = () => members.share(config.origin.maxConcurrency, config.fleet.minProcesses);
  const guard: RedisGuard = new RedisGuard({
    ...{ connection, config, clock, prefix, onDataLoss: (graceUntil) => leases.reassert(graceUntil) },
    fallback: new LocalGuard({ config, clock, maxConcurrency: share }),
    onDegradedChange: (degraded) =>
      degraded
        ? logger.warn("origin guard: redis unreachable, this process keeps to its share of the cap", {
            share: share(),
            fleet: members.members.length,
          })
        : logger.info("origin guard: fleet-wide cap again"),
  });
  return { leases, guard };
}

/** A member's Redis connections and the news it sends and hears on them. */
interface FleetLinks {
  connection: RedisConnection;
  bulk: RedisConnection;
  notifier: RedisNotifier;
  invalidations: FleetInvalidations;
  leases: RedisLeaseManager;
}

/**
 * The fleet's coordinator: a KeyCoordinator over the Redis store, leases and fill
 * announcements, which fails fast while Redis is unreachable so the engine falls back.
 */
function fleetCoordinator(
  options: FleetStackOptions,
  redis: FleetLinks,
  prefix: string,
  shared: RedisStore,
  parts: Pick<KeyCoordinatorOptions, "guard" | "background" | "onOriginCall" | "fetch" | "decodes">,
): Coordinator & { close(): Promise<void> } {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const { connection, bulk, notifier, invalidations, leases } = redis;
  const ordered = connection.target.kind !== "cluster";
  // Each flight's answer reaches the other members' waiters as the leader's own get it.
  const relay = new RedisFlightRelay({
    connection,
    bulk,
    notifier,
    prefix,
    leaseKey: (key) => leases.leaseKey(key),
    ...relayBounds(config),
  });
  const fleet = new KeyCoordinator({
    config,
    clock,
    store: shared,
    leases,
    relay,
    // Fleet-wide: a key backing off is not asked for by any member.
    backoff: new RedisBackoffStore({ connection, prefix, clock }),
    readsFollowAcquire: ordered,
    ...parts,
    // A small stored entry goes with its announcement: the waiters need not read it back.
    announceFill: async (key, message, stored) =>
      void (await notifier.publish(key, fillNews(message, stored)).catch(() => 0)),
    waitForFill: async (key, timeoutMs, answered) => {
      // Subscribe first, then look: a fill or an answer announced in between is then never missed.
      const stop = new AbortController();
      const waiting = notifier.listen(key, timeoutMs, stop.signal);
      if (!(await waiting.subscribed)) return undefined;
      const [entry, held] = await Promise.all([answered().catch(() => undefined), leases.held(key).catch(() => true)]);
      if (entry) {
        stop.abort();
        return { message: "done", entry };
      }
      const current = () => relay.current(key).catch(() => undefined);
      const relayed = await current();
      const answer = relayed === STREAMING ? undefined : relayed;
      // The flight ended before this caller subscribed (its announcement may have gone): look again at once.
      if (answer || !held) stop.abort();
      if (answer) return { message: answer };
      const news = held ? await waiting.message : undefined;
      if (news !== undefined) return heardFrom(news);
      // No end heard: a holder streaming a body it copied for nobody is alive, not stuck; say so.
      return held && (await current()) === STREAMING ? { message: STREAMING } : undefined;
    },
  });
  return {
    fill: (request) => {
      if (!connection.healthy)
        return Promise.reject(new HerdlessError("COORDINATOR_UNAVAILABLE", "redis is unreachable"));
      return fleet.fill(request);
    },
    // Without Redis there is no shared copy to drop; the write itself has already succeeded.
    invalidate: async (primary, headers) => {
      if (!connection.healthy) return;
      // The shared copy first: a member that hears the news and asks again must not find it.
      await fleet.invalidate(primary, headers);
      await invalidations.announce(primary, headers);
    },
    close: () => notifier.close(),
  };
}

/** The relay's bounds: a lease term, a streamed body's longest run, a stored entry's size, a stalled reader. */
function relayBounds(config: Config): Pick<RedisFlightRelayOptions, "ttlMs" | "markTtlMs" | "windowBytes" | "stallMs"> {
  return {
    ttlMs: config.coordinator.lockLeaseMs,
    markTtlMs: config.origin.streamTimeoutMs + config.coordinator.lockLeaseMs,
    windowBytes: config.cache.maxEntryBytes,
    stallMs: config.origin.streamIdleTimeoutMs,
  };
}
