/** herdless on Node.js: the reverse proxy, its stacks (one process, or a Redis fleet), and the Redis parts. */
export { cli, loadConfig, main } from "./cli.ts";
export { redisStack, type FleetStackOptions } from "./fleet-stack.ts";
export { jsonLogger, type Logger, type LogLevel } from "./logger.ts";
export { RedisConnection } from "./redis-connection.ts";
export { RedisGuard } from "./redis-guard.ts";
export { RedisLeaseManager } from "./redis-lease.ts";
export { RedisNotifier } from "./redis-notifier.ts";
export { RedisPurgeRegistry } from "./redis-purge.ts";
export { RedisStore } from "./redis-store.ts";
export { createHandler, type HandlerOptions, type HerdlessHandler } from "./handler.ts";
export { startServer, type RunningServer, type ServerOptions } from "./server.ts";
export { localStack, type Stack, type StackOptions } from "./stack.ts";
