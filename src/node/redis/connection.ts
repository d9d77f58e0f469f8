import { createRequire } from "node:module";
import type { Cluster, Redis, RedisOptions } from "ioredis";
import { HerdlessError } from "../../core/errors.ts";
import { prepareClusterNodes } from "./cluster-nodes.ts";
import { timeCommands } from "./command-timeout.ts";
import { loadScripts } from "./lua-script.ts";
import { describeRedisTarget, parseRedisTarget, type RedisTarget } from "./target.ts";

/** A client of one Redis (or a Sentinel-watched master) or of a Redis Cluster: the same commands. */
export type RedisClient = Redis | Cluster;

/**
 * ioredis is an optional peer dependency (a Workers or single-process user never needs it),
 * so it is loaded when the first connection is made, with an error that says how to get it.
 * `check-config --redis` loads it too: a config it passes must also start.
 */
export function loadIoredis(): typeof import("ioredis") {
  try {
    return createRequire(import.meta.url)("ioredis") as typeof import("ioredis");
  } catch (cause) {
    if ((cause as { code?: string }).code !== "MODULE_NOT_FOUND") throw cause;
    throw new HerdlessError(
      "DEPENDENCY_MISSING",
      "the Redis fleet (--redis, RedisConnection) needs the ioredis package, an optional peer dependency of herdless: npm install ioredis@6",
      { cause },
    );
  }
}

export interface RedisConnectionOptions {
  /** `redis://[user:password@]host:port[/db]`, a `redis+sentinel://` URL or a Cluster node list (see parseRedisTarget). */
  url?: string;
  /** The target already parsed (a config block); wins over `url`. */
  target?: RedisTarget;
  /** Give up on a TCP connect after this long. Default 1000. */
  connectTimeoutMs?: number;
  /**
   * Reject a command with no reply after this long (a black-holed network never closes the
   * socket). A reply that came in time but that a busy event loop had not read yet still
   * counts (command-timeout.ts). Default 1000.
   */
  commandTimeoutMs?: number;
  /**
   * Upper bound of the reconnect backoff, so a returning Redis is noticed quickly: the fleet
   * guard's rejoin grace (400 ms) counts on every process noticing well within it. Default 100.
   */
  maxReconnectDelayMs?: number;
  /**
   * Let ioredis resubscribe its own record of channels after a reconnect. Default true;
   * the notifier turns it off and resubscribes from its waiter map, which is the truth.
   */
  autoResubscribe?: boolean;
  /**
   * Load every Lua script into Redis as the connection becomes ready, before it is healthy
   * (lua-script.ts). Default true; a pub/sub subscriber, which runs none, turns it off.
   */
  loadsScripts?: boolean;
}

type HealthListener = (healthy: boolean) => void;

/**
 * One ioredis client configured to fail fast: while Redis is unreachable, commands reject
 * at once instead of queueing (the caller degrades to local single-flight and keeps
 * serving), and the client keeps reconnecting in the background with a backoff capped at
 * 100 ms. `healthy` follows the connection; listeners hear every change.
 *
 * @example
 * const redis = new RedisConnection({ url: "redis://127.0.0.1:6379" });
 * redis.onHealthChange((ok) => log(ok ? "redis back" : "redis down, local single-flight"));
 * await redis.ready();
 */
export class RedisConnection {
  readonly client: RedisClient;
  readonly target: RedisTarget;
  private readonly listeners = new Set<HealthListener>();
  private isHealthy = false;
  private closed = false;
  /** The last connection error, for reporting the degradation. */
  lastError: Error | undefined;

  constructor(private readonly options: RedisConnectionOptions) {
    checkPositive(options.connectTimeoutMs, "connectTimeoutMs");
    checkPositive(options.commandTimeoutMs, "commandTimeoutMs");
    checkPositive(options.maxReconnectDelayMs, "maxReconnectDelayMs");
    const maxDelayMs = options.maxReconnectDelayMs ?? 100;
    if (!options.target && options.url === undefined)
      throw new HerdlessError("CONFIG_INVALID", "RedisConnection: pass url or target");
    this.target = options.target ?? parseRedisTarget(options.url!);
    const { Redis, Cluster } = loadIoredis();
    const commandTimeoutMs = options.commandTimeoutMs ?? 1000;
    const retryStrategy = (attempt: number) => Math.min(50 * 2 ** attempt, maxDelayMs);
    const common: RedisOptions = {
      connectTimeout: options.connectTimeoutMs ?? 1000,
      // No commandTimeout: timeCommands (below) times commands, from after this process read its sockets.
      // No offline queue and no per-request retries: a command against a dead Redis
      // rejects immediately, and in-flight commands reject when the socket closes.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy,
      // CLIENT SETINFO is Redis ≥ 7.2; skipping it keeps older servers' logs clean.
      disableClientInfo: true,
      autoResubscribe: options.autoResubscribe ?? true,
    };
    const target = this.target;
    if (target.kind === "single") this.client = new Redis(target.url, common);
    else if (target.kind === "sentinel")
      this.client = new Redis({
        ...common,
        sentinels: target.sentinels,
        name: target.name,
        role: "master",
        username: target.username,
        password: target.password,
        sentinelPassword: target.sentinelPassword,
        db: target.db ?? 0,
        // Keep asking the sentinels (they may be restarting too).
        sentinelRetryStrategy: retryStrategy,
        // A demoted master answers writes with READONLY: reconnect, which asks the sentinels anew.
        reconnectOnError: (error) => error.message.startsWith("READONLY"),
      });
    else
      this.client = new Cluster(target.nodes, {
        redisOptions: { ...common, username: target.username, password: target.password },
        enableOfflineQueue: false,
        enableReadyCheck: true,
        clusterRetryStrategy: retryStrategy,
        // A slot whose master failed answers CLUSTERDOWN (or its socket closes) until a
        // replica takes over: fail the call at once (the caller degrades), as for one Redis.
        retryDelayOnClusterDown: 0,
        retryDelayOnFailover: 0,
        slotsRefreshTimeout: 1000,
        scaleReads: "master",
      });
    const client = this.client;
    const loads = options.loadsScripts !== false;
    timeCommands(client, commandTimeoutMs);
    if (client instanceof Cluster)
      prepareClusterNodes(client, { loadsScripts: loads, commandTimeoutMs, onReady: () => this.setHealthy(true) });
    else
      client.on("ready", () => {
        if (!loads) return this.setHealthy(true);
        // Every script is loaded as the connection becomes ready, ahead of anything else it
        // carries (lua-script.ts); healthy once the loads answered, so what starts on the way
        // back (the guard's rejoin) finds its scripts.
        void loadScripts(client, client).then(() => client.status === "ready" && this.setHealthy(true));
      });
    this.client.on("close", () => this.setHealthy(false));
    this.client.on("end", () => this.setHealthy(false));
    // Without a listener ioredis prints every reconnect failure; keep it for reports instead.
    this.client.on("error", (error: Error) => {
      this.lastError = error;
    });
  }

  /** True while the client is connected and ready for commands. */
  get healthy(): boolean {
    return this.isHealthy;
  }

  /** Calls `listener` on every change of {@link healthy}; returns the unsubscribe function. */
  onHealthChange(listener: HealthListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once connected; rejects with COORDINATOR_UNAVAILABLE after `timeoutMs`. */
  ready(timeoutMs = 5000): Promise<void> {
    if (this.isHealthy) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        unsubscribe();
        reject(unavailable(`redis at ${this.describe()} not ready within ${timeoutMs} ms`, this.lastError));
      }, timeoutMs);
      const unsubscribe = this.onHealthChange((healthy) => {
        if (!healthy) return;
        clearTimeout(timer);
        unsubscribe();
        resolve();
      });
    });
  }

  /** A second connection with the same settings (a pub/sub subscriber needs its own). */
  duplicate(overrides: Partial<RedisConnectionOptions> = {}): RedisConnection {
    return new RedisConnection({ ...this.options, ...overrides });
  }

  /**
   * Runs a command, turning any client failure into COORDINATOR_UNAVAILABLE so callers
   * catch one code whatever ioredis reports (closed stream, timeout, reply error).
   */
  /** Where this connection points, without credentials (for logs). */
  describe(): string {
    return describeRedisTarget(this.target);
  }

  async run<T>(what: string, command: (client: RedisClient) => Promise<T>): Promise<T> {
    try {
      return await command(this.client);
    } catch (cause) {
      // A frozen or black-holed server keeps the socket open, so only the command timeout
      // notices it. Drop the socket: until Redis answers again, calls fail at once (no
      // offline queue) instead of each waiting out its own timeout.
      if (cause instanceof Error && cause.message === "Command timed out" && this.isHealthy) {
        this.setHealthy(false);
        this.client.disconnect(true);
      }
      throw unavailable(`redis ${what} failed: ${cause instanceof Error ? cause.message : String(cause)}`, cause);
    }
  }

  /** Disconnects for good; pending commands reject. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.disconnect();
    this.setHealthy(false);
    this.listeners.clear();
  }

  private setHealthy(healthy: boolean): void {
    if (healthy === this.isHealthy) return;
    this.isHealthy = healthy;
    for (const listener of [...this.listeners]) listener(healthy);
  }
}

/**
 * The Redis key `${prefix}${role}:{${tag}}`. Redis Cluster places a key by the part between
 * its first `{` and the next `}` (the hash tag), so the keys one script touches together
 * share a tag and land in one slot; on a single Redis or Sentinel the braces are just text.
 * The prefix must hold no braces, or its own would become the tag: see {@link checkPrefix}.
 *
 * @example
 * slotKey("herdless:", "lease", key); slotKey("herdless:", "fence", key); // one slot
 */
export function slotKey(prefix: string, role: string, tag: string): string {
  return `${prefix}${role}:{${tag}}`;
}

/** Rejects a key prefix that would break the hash tags of {@link slotKey}. */
export function checkPrefix(prefix: string): string {
  if (/[{}]/.test(prefix))
    throw new HerdlessError(
      "CONFIG_INVALID",
      `redis key prefix ${JSON.stringify(prefix)} must not contain { or } (Redis Cluster hash tags); check cache.name`,
    );
  return prefix;
}

/**
 * Whether a command that failed may run (or have run) in Redis all the same: it was sent and
 * no answer came (a timeout, a connection dropped under it), so a Redis that stalled runs it
 * when it resumes. A reply error (Redis answered) or a command never sent (no connection:
 * the client has no offline queue) did not run.
 */
export function mayHaveRun(error: unknown): boolean {
  const cause = error instanceof HerdlessError ? error.cause : error;
  if (!(cause instanceof Error)) return true;
  return cause.name !== "ReplyError" && !cause.message.includes("enableOfflineQueue options is false");
}

function unavailable(message: string, cause: unknown): HerdlessError {
  return new HerdlessError("COORDINATOR_UNAVAILABLE", message, { cause });
}

function checkPositive(value: number | undefined, field: string): void {
  if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
    throw new HerdlessError(
      "CONFIG_INVALID",
      `RedisConnection: ${field} must be a positive number of milliseconds, got ${String(value)}`,
    );
  }
}
