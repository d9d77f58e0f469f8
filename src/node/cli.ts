import { readFile } from "node:fs/promises";
import { getHeapStatistics } from "node:v8";
import { defaultPolicy, parseConfig, type Config } from "../core/config.ts";
import { namingSources } from "../core/config/messages.ts";
import { isHerdlessError } from "../core/errors.ts";
import {
  heapLimitsFor,
  waitingLimit,
  heapSizedByOperator,
  reportExitCode,
  serveInBoundedHeap,
  stopRequested,
  workerArgv,
} from "./bounded-heap.ts";
import { hostListenError, listenFlags, readFlags, UsageError, type CliFlags } from "./cli-flags.ts";
import { watchLauncher } from "./launcher.ts";
import { jsonLogger, type LogLevel } from "./logger.ts";
import type { Stack } from "./stack.ts";
import { describeRedisTarget, parseRedisTarget, redisTargetFromConfig, type RedisTarget } from "./redis/target.ts";

const USAGE = `usage:
  herdless --origin http://127.0.0.1:8080 [--port 8787] [--host 127.0.0.1] [--redis URL] [--log-level info] [--access-log]
  herdless --config herdless.config.json [flags override the file]
  herdless check-config [--config FILE] [--origin URL]   print the effective config and exit
  herdless --help                                        every flag`;

/** `--help`: every flag of docs/node.md, with its default (the usage alone left --admin-token and -c, -p, -h out). */
const HELP = `${USAGE}

flags:
  --origin URL          the origin, http(s)://host:port[/prefix] (over origin.url)
  --config FILE, -c     a JSON config file (docs/configuration.md); the flags override it
  --port N, -p          port to listen on (8787; 0: any free port)
  --host ADDR           address to listen on (127.0.0.1; 0.0.0.0: every interface)
  --redis URL           join a fleet: redis://host:6379 | redis+sentinel://host:26379[,host:26379]/mymaster
                        | redis+cluster://host:7000[,host:7001]
  --admin-token T       token of the admin API /__herdless/, 16+ characters (or HERDLESS_ADMIN_TOKEN, admin.token)
  --log-level L         debug | info | warn | error | silent (info)
  --access-log          one JSON line per request on stdout
  --help, -h            this text

SIGTERM or SIGINT drains and exits 0; a mistake in flags or config exits 2, a failure at run time 1.`;

/** A config file that cannot be read or is not a JSON object: exit code 2. */
class ConfigFileError extends Error {}

/** Reads flags and the config file into a validated config; flags override the file. */
export async function loadConfig(flags: CliFlags, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  return (await loadSettings(flags, env)).config;
}

/**
 * {@link loadConfig} plus the fleet's Redis: `--redis`, else the config file's `redis` (a URL
 * string, or a Sentinel or Cluster block, see redisTargetFromConfig). Undefined: one process.
 */
export async function loadSettings(
  flags: CliFlags,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ config: Config; redis: RedisTarget | undefined }> {
  let input: Record<string, unknown> = {};
  if (flags.config) {
    const bytes = await readFile(flags.config).catch((error: unknown) => {
      throw new ConfigFileError(
        `cannot read --config ${flags.config}: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
    let text: string;
    try {
      // Fatal: a latin1 "café" read as UTF-8 became "caf\uFFFD", a setting other than the one written.
      // A BOM at the start is dropped (editors on Windows write one), as JSON.parse would refuse it.
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new ConfigFileError(`--config ${flags.config} is not UTF-8 text: save it as UTF-8`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new ConfigFileError(
        `--config ${flags.config} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    if (!isObject(parsed))
      throw new ConfigFileError(
        `--config ${flags.config} must hold a JSON object such as {"origin":{"url":"http://127.0.0.1:8080"}}`,
      );
    input = parsed;
  }
  const section = (name: string): Record<string, unknown> => {
    const value = input[name];
    if (value === undefined) return {};
    if (!isObject(value))
      throw new ConfigFileError(`--config ${flags.config}: ${name} must be an object, got ${JSON.stringify(value)}`);
    return { ...value };
  };
  const origin = section("origin");
  if (flags.origin) origin.url = flags.origin;
  if (origin.url === undefined)
    throw new UsageError("no origin configured: pass --origin http://HOST:PORT or set origin.url in --config");
  const admin = section("admin");
  const token = flags["admin-token"] ?? env.HERDLESS_ADMIN_TOKEN;
  if (token) admin.token = token;
  const log = section("log");
  if (flags["log-level"]) log.level = flags["log-level"];
  if (flags["access-log"]) log.access = true;
  const { redis, ...rest } = input;
  const target = flags.redis
    ? parseRedisTarget(flags.redis)
    : redis === undefined
      ? undefined
      : redisTargetFromConfig(redis);
  const sources: [string, string | undefined][] = [
    ["origin.url", flags.origin ? "--origin" : undefined],
    ["admin.token", flags["admin-token"] ? "--admin-token" : token ? "HERDLESS_ADMIN_TOKEN" : undefined],
    ["log.level", flags["log-level"] ? "--log-level" : undefined],
  ];
  return { config: namedAsSet(() => parseConfig({ ...rest, origin, admin, log }), sources), redis: target };
}

/** Runs `parse`, its refusal naming the flags and variables the operator set (config/messages.ts namingSources). */
function namedAsSet(parse: () => Config, sources: [string, string | undefined][]): Config {
  try {
    return parse();
  } catch (error) {
    throw isHerdlessError(error, "CONFIG_INVALID") ? namingSources(error, sources) : error;
  }
}

/**
 * The config as `check-config` prints it: every default in force, `defaults` included (the
 * parsed config keeps only what the file set there), and the admin token as `"(set)"`. Only
 * the admin token was kept of `admin`, which hid `admin.purgePropagationMs` and
 * `admin.statsReportIntervalMs`.
 */
function effectiveConfig(config: Config): Record<string, unknown> {
  const admin = { ...config.admin, token: config.admin.token ? "(set)" : undefined };
  return { ...config, defaults: defaultPolicy(config), admin };
}

/** Where the CLI writes; tests pass their own. */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

const processIo: CliIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

/** How `npx herdless` serves (see {@link run}); the library's `main` and `cli` serve in the calling thread. */
interface ServeOptions {
  /** The CLI module to run again in a worker thread with a heap sized for the cache (bounded-heap.ts). */
  boundedHeapEntry?: URL;
}

/** Runs the CLI: `serve` (the default) until SIGTERM/SIGINT, or `check-config`. Returns the exit code. */
export async function main(argv: string[], io: CliIo = processIo, options: ServeOptions = {}): Promise<number> {
  const command = argv[0] === "check-config" ? "check-config" : "serve";
  const values = readFlags(command === "serve" ? argv : argv.slice(1));
  if (values.help) {
    io.stdout(`${HELP}\n`);
    return 0;
  }
  const listen = listenFlags(values);
  const { config, redis } = await loadSettings(values);
  if (command === "check-config") {
    // What serving would need first: without ioredis, `--redis` fails at start (exit 2, naming it).
    if (redis) (await import("./redis/connection.ts")).loadIoredis();
    const shown = effectiveConfig(config);
    io.stdout(`${JSON.stringify(redis ? { ...shown, redis: describeRedisTarget(redis) } : shown, null, 2)}\n`);
    return 0;
  }
  if (options.boundedHeapEntry && !heapSizedByOperator(process.execArgv, process.env.NODE_OPTIONS))
    return serveInBoundedHeap(options.boundedHeapEntry, argv, heapLimitsFor(config.cache.maxBytes), io.stderr);
  const logger = jsonLogger(config.log.level as LogLevel);
  // Loaded here, not on top: the main thread of a bounded-heap run never serves, so it loads
  // only what reads the config (less memory in that thread, and a faster start).
  const [{ startServer }, { localStack }] = await Promise.all([import("./server.ts"), import("./stack.ts")]);
  const stack: Stack = redis ? await fleetStack(config, logger, redis) : localStack({ config, logger });
  // A port in use must not leave the Redis connections reconnecting forever: the process would never exit.
  const running = await startServer({ stack, logger, ...listen }).catch(async (error: unknown) => {
    await stack.close();
    throw hostListenError(error, listen.host) ?? error;
  });
  // Listen for the stop signal before saying "listening": a supervisor may send SIGTERM as
  // soon as it reads that line, and a signal with no listener yet kills the process (exit by
  // signal, not 0). In the bounded-heap worker the main thread receives the signals and passes them on.
  // `npx herdless` (boundedHeapEntry set) also stops when npm goes (launcher.ts); a library caller's process does not.
  const stop = workerArgv() ? stopRequested() : untilSignal(options.boundedHeapEntry !== undefined);
  logger.info("herdless listening", {
    url: running.url,
    port: running.port,
    origin: config.origin.url,
    mode: stack.mode(),
    maxConnections: running.maxConnections,
    // The heap the server runs in: sized from cache.maxBytes, or by the operator's flags.
    heapLimitMiB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20),
    // Requests held waiting for an origin answer at most: origin.maxWaiting, or what that heap has room for.
    maxWaiting: waitingLimit(config),
  });
  const signal = await stop;
  logger.info("shutting down", { signal });
  await running.close();
  logger.info("stopped", { signal });
  return 0;
}

async function fleetStack(config: Config, logger: ReturnType<typeof jsonLogger>, redis: RedisTarget): Promise<Stack> {
  const { redisStack } = await import("./fleet-stack.ts");
  return redisStack({ config, logger, redis });
}

/**
 * The CLI with errors turned into exit codes: 2 for a mistake in flags or config (with the
 * reason, naming the flag or field) or a missing optional dependency (ioredis for --redis),
 * 1 for a failure at run time (port in use).
 *
 * @example
 * const code = await cli(["check-config", "--origin", "http://127.0.0.1:8080"]);
 */
export async function cli(argv: string[], io: CliIo = processIo, options: ServeOptions = {}): Promise<number> {
  let code: number;
  try {
    code = await main(argv, io, options);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof UsageError) {
      io.stderr(`herdless: ${message}\n\n${USAGE}\n`);
      code = 2;
    } else if (
      error instanceof ConfigFileError ||
      isHerdlessError(error, "CONFIG_INVALID") ||
      isHerdlessError(error, "DEPENDENCY_MISSING")
    ) {
      io.stderr(`herdless: ${message}\n`);
      code = 2;
    } else {
      io.stderr(`herdless: ${message}\n`);
      code = 1;
    }
  }
  return code;
}

function untilSignal(launcher: boolean): Promise<string> {
  return new Promise((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
    if (launcher) watchLauncher(resolve);
  });
}

/**
 * The entry point of `npx herdless` (src/node/bin.ts, whose URL is `entry`). It serves in a
 * worker thread running `entry` again, with a V8 heap sized for `cache.maxBytes`
 * (bounded-heap.ts), unless the operator sized the heap; in that worker it serves.
 */
export async function run(argv: string[], entry: URL): Promise<void> {
  const inWorker = workerArgv();
  if (inWorker) reportExitCode(await cli(inWorker));
  else process.exitCode = await cli(argv, processIo, { boundedHeapEntry: entry });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
