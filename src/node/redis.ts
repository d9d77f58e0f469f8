/**
 * herdless/node/redis: a fleet of Node processes sharing Redis (entries, key leases, fill
 * announcements, the origin guard and purges). Needs the ioredis package, an optional peer
 * dependency: `npm install ioredis`.
 *
 * @example
 * const stack = await redisStack({ config, logger, redisUrl: "redis://127.0.0.1:6379" });
 * const handler = createHandler({ stack });
 */
export { redisStack, type FleetStackOptions } from "./fleet-stack.ts";
export { RedisConnection, type RedisConnectionOptions } from "./redis-connection.ts";
export { RedisGuard } from "./redis-guard.ts";
export { RedisLeaseManager } from "./redis-lease.ts";
export { RedisNotifier } from "./redis-notifier.ts";
export { RedisPurgeRegistry } from "./redis-purge.ts";
export { RedisStore } from "./redis-store.ts";
