import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { afterAll, beforeAll } from "vitest";
import { freePort } from "../../fixtures/free-port.ts";
import { RedisConnection, type RedisConnectionOptions } from "../../src/node/redis/connection.ts";

/**
 * A throwaway redis-server for tests: its own free port on 127.0.0.1, no persistence,
 * killed when the test process exits. Tests never touch a system Redis on 6379.
 *
 * @example
 * const redis = await startRedisServer();
 * const connection = new RedisConnection({ url: redis.url });
 * await redis.kill(); await redis.restart();
 */
export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** Graceful shutdown (SIGTERM), resolved once the process exited. */
  stop(): Promise<void>;
  /** SIGKILL, for outage tests: clients see the socket drop with no goodbye. */
  kill(): Promise<void>;
  /** SIGSTOP: the socket stays open but nothing answers, like a black-holed network. */
  pause(): void;
  /** SIGCONT after {@link pause}. */
  resume(): void;
  /** Starts again on the same port (after stop or kill) and waits until it answers. */
  restart(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export async function startRedisServer(): Promise<RedisServer> {
  const binary = findRedisServer();
  const launched = await launchOnFreePort(binary);
  const port = launched.port;
  let child = launched.child;

  const stopWith = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    if (signal !== "SIGKILL") child.kill("SIGCONT"); // a paused server would never see SIGTERM
    await exited;
  };

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () => stopWith("SIGTERM"),
    kill: () => stopWith("SIGKILL"),
    pause: () => void child.kill("SIGSTOP"),
    resume: () => void child.kill("SIGCONT"),
    async restart() {
      await stopWith("SIGKILL");
      child = await launch(binary, port);
    },
  };
}

/** Connection settings a test may choose; the URL is the test's server. */
type TestConnectionOptions = Omit<RedisConnectionOptions, "url" | "target">;

/** What {@link redisTestConnection} hands a test file. */
export interface RedisTestConnection {
  /** The file's own redis-server (kill, pause and restart it in outage tests). */
  readonly server: RedisServer;
  /** A connection, ready before the first test. */
  readonly connection: RedisConnection;
  /** A namespace for each call, `test:<pid>:<n>:`, so no two tests see each other's keys. */
  prefix(): string;
  /** Another ready connection to the server, as another process of a fleet holds one. */
  connect(options?: TestConnectionOptions): Promise<RedisConnection>;
}

/**
 * The setup every Redis test file needs, in one place: before its tests a throwaway
 * redis-server ({@link startRedisServer}) and a ready connection to it; after them every
 * connection made here closed and the server stopped. Call it at the top of the file.
 *
 * @example
 * const redis = redisTestConnection();
 * it("stores", async () => {
 *   const store = new RedisStore({ connection: redis.connection, prefix: redis.prefix() });
 * });
 */
export function redisTestConnection(options: TestConnectionOptions = {}): RedisTestConnection {
  let server: RedisServer | undefined;
  const connections: RedisConnection[] = [];
  let prefixes = 0;
  const started = (): RedisServer => {
    if (server === undefined) throw new Error("redisTestConnection: the server starts in beforeAll; use it in a test");
    return server;
  };
  const connect = async (own: TestConnectionOptions = options): Promise<RedisConnection> => {
    const connection = new RedisConnection({ ...own, url: started().url });
    connections.push(connection);
    await connection.ready();
    return connection;
  };
  beforeAll(async () => {
    server = await startRedisServer();
    await connect();
  });
  afterAll(async () => {
    await Promise.all(connections.splice(0).map((connection) => connection.close()));
    await server?.stop();
  });
  return {
    get server() {
      return started();
    },
    get connection() {
      started();
      return connections[0]!;
    },
    prefix: () => `test:${process.pid}:${++prefixes}:`,
    connect,
  };
}

export function findRedisServer(): string {
  const found = spawnSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" });
  const path = found.stdout.trim();
  if (found.status !== 0 || path === "") {
    throw new Error(
      "redis-server is not on PATH; the Redis tests spawn their own server. Install it with `apt-get install -y redis-server`.",
    );
  }
  return path;
}

/**
 * Starts `binary` on a port the OS just handed out, with `extra(port)` first: a port found
 * free can be taken before redis-server binds it (another test's outgoing connection, on a
 * loaded CI machine), and redis-server then exits, so a server that exits before answering
 * PING is started again on fresh ports, up to 3 times.
 */
export async function launchOnFreePort(
  binary: string,
  extra: (port: number) => Promise<string[]> | string[] = () => [],
): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return { port, child: await launch(binary, port, await extra(port)) };
    } catch (error) {
      if (attempt >= 3) throw error;
    }
  }
}

/** Starts `binary` (redis-server, or redis-sentinel with a config file first in `extra`) and waits for PONG. */
export async function launch(binary: string, port: number, extra: string[] = []): Promise<ChildProcess> {
  const child = spawn(
    binary,
    [
      ...extra,
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      tmpdir(),
      "--daemonize",
      "no",
      "--loglevel",
      "warning",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  running.add(child);
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.once("exit", () => running.delete(child));
  const deadline = Date.now() + 5000;
  while (!(await answersPing(port))) {
    if (child.exitCode !== null)
      throw new Error(`redis-server on port ${port} exited with ${child.exitCode}: ${stderr}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`redis-server on port ${port} did not answer PING within 5 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return child;
}

/** True once something on the port answers PING with PONG (a bare TCP accept is not enough). */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => done(data.toString().startsWith("+PONG")));
  });
}
