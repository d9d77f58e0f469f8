/**
 * herdless on Node.js: the request handler, the reverse proxy and its one-process stack,
 * and the CLI. The Redis fleet is `herdless/node/redis` (it needs the optional ioredis).
 */
export { cli, loadConfig, main } from "./cli.ts";
export { jsonLogger, type Logger, type LogLevel } from "./logger.ts";
export { createHandler, type HandlerOptions, type HerdlessHandler } from "./handler.ts";
export { MAX_PIPELINED, pipelineBound } from "./pipeline-bound.ts";
export { startServer, type RunningServer, type ServerOptions } from "./server.ts";
export { localStack, type Stack, type StackOptions } from "./stack.ts";
