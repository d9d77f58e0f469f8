/**
 * herdless/node/redis: a fleet of Node processes sharing Redis (entries, key leases, fill
 * announcements, the origin guard and purges). Needs the ioredis package, an optional peer
 * dependency: `npm install ioredis`.
 *
 * @example
 * const stack = await redisStack({ config, logger, redisUrl: "redis://127.0.0.1:6379" });
 * const handler = createHandler({ stack });
 */
export { redisStack, type FleetStackOptions } from "../fleet-stack.ts";
export { RedisConnection, type RedisConnectionOptions } from "./connection.ts";
export { RedisGuard } from "./guard.ts";
export { RedisLeaseManager } from "./lease.ts";
export { FleetMembers } from "./members.ts";
export { RedisNotifier } from "./notifier.ts";
export { RedisPurgeRegistry } from "./purge.ts";
export { RedisStore } from "./store.ts";
