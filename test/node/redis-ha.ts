import { execFile, type ChildProcess } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "../../fixtures/free-port.ts";
import { findRedisServer, launchOnFreePort } from "./redis-server.ts";

/**
 * Highly available Redis for tests, on free ports of 127.0.0.1, killed with the test
 * process: a Sentinel setup (master, replica, one sentinel with quorum 1) and a Cluster of
 * three masters (the one holding the `{guard}` slot has a replica). `failover()` kills the
 * master with SIGKILL and resolves once the replica has taken over.
 *
 * @example
 * const ha = await startSentinel();
 * const connection = new RedisConnection({ url: ha.url });
 * await ha.failover();
 */
export interface HaRedis {
  /** What `--redis` takes for this setup. */
  readonly url: string;
  failover(): Promise<void>;
  stop(): Promise<void>;
}

const exec = promisify(execFile);

/** One command through redis-cli (installed with redis-server). */
export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await exec("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { timeout: 10_000 });
  return stdout.trim();
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`redis HA setup: ${what} not reached within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function stopAll(children: ChildProcess[]): Promise<void> {
  return Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        }),
    ),
  ).then(() => undefined);
}

/** A master, its replica and one sentinel (quorum 1, the master is down after 500 ms). */
export async function startSentinel(): Promise<HaRedis> {
  const binary = findRedisServer();
  const dir = await mkdtemp(join(tmpdir(), "herdless-sentinel-"));
  const { port: masterPort, child: master } = await launchOnFreePort(binary);
  const { port: replicaPort, child: replica } = await launchOnFreePort(binary, () => [
    "--replicaof",
    "127.0.0.1",
    String(masterPort),
  ]);
  const conf = join(dir, "sentinel.conf");
  await writeFile(
    conf,
    [
      `sentinel monitor herdless 127.0.0.1 ${masterPort} 1`,
      "sentinel down-after-milliseconds herdless 500",
      "sentinel failover-timeout herdless 5000",
      "",
    ].join("\n"),
  );
  const { port: sentinelPort, child: sentinel } = await launchOnFreePort(binary, () => [conf, "--sentinel"]);
  await until("replica in sync", async () =>
    (await redisCli(replicaPort, "info", "replication")).includes("master_link_status:up"),
  );
  await until("sentinel sees the replica", async () =>
    (await redisCli(sentinelPort, "sentinel", "replicas", "herdless")).includes(String(replicaPort)),
  );
  const children = [master, replica, sentinel];
  return {
    url: `redis+sentinel://127.0.0.1:${sentinelPort}/herdless`,
    async failover() {
      await stopAll([master]);
      await until("sentinel promotes the replica", async () =>
        (await redisCli(sentinelPort, "sentinel", "get-master-addr-by-name", "herdless")).includes(String(replicaPort)),
      );
      await until("replica is master", async () => (await redisCli(replicaPort, "role")).startsWith("master"));
    },
    stop: () => stopAll(children),
  };
}

/** Three masters; the master of the `{guard}` slot (the fleet's origin guard) gets a replica. */
export async function startCluster(): Promise<HaRedis> {
  const binary = findRedisServer();
  const dir = await mkdtemp(join(tmpdir(), "herdless-cluster-"));
  // The cluster bus port defaults to port + 10000: past 65535 (or taken) for a high
  // ephemeral port, and redis-server exits. Each node gets a free one of its own.
  const nodes = await Promise.all(
    [0, 1, 2, 3].map(() =>
      launchOnFreePort(binary, async (port) => [
        "--cluster-port",
        String(await freePort()),
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        join(dir, `nodes-${port}.conf`),
        "--cluster-node-timeout",
        "1000",
        "--cluster-replica-validity-factor",
        "0",
      ]),
    ),
  );
  const ports = nodes.map((node) => node.port);
  const children = nodes.map((node) => node.child);
  const [a, b, c, spare] = ports as [number, number, number, number];
  await exec("redis-cli", ["--cluster", "create", ...[a, b, c].map((p) => `127.0.0.1:${p}`), "--cluster-yes"], {
    timeout: 20_000,
  });
  await until("cluster ok", async () => (await redisCli(a, "cluster", "info")).includes("cluster_state:ok"));
  const slot = Number(await redisCli(a, "cluster", "keyslot", "{guard}"));
  const owner = (await redisCli(a, "cluster", "nodes"))
    .split("\n")
    .map((line) => line.split(" "))
    .find((f) => f[2]?.includes("master") && f.slice(8).some((range) => inRange(range, slot)));
  if (!owner) throw new Error(`no master holds slot ${slot}`);
  const [ownerId, ownerAddr] = owner as [string, string];
  const ownerPort = Number(/:(\d+)@/.exec(ownerAddr)?.[1]);
  await exec(
    "redis-cli",
    [
      "--cluster",
      "add-node",
      `127.0.0.1:${spare}`,
      `127.0.0.1:${a}`,
      "--cluster-slave",
      "--cluster-master-id",
      ownerId,
    ],
    { timeout: 20_000 },
  );
  await until("replica in sync", async () =>
    (await redisCli(spare, "info", "replication")).includes("master_link_status:up"),
  );
  await until("cluster ok everywhere", async () => {
    for (const port of ports) if (!(await redisCli(port, "cluster", "info")).includes("cluster_state:ok")) return false;
    return true;
  });
  const ownerChild = children[ports.indexOf(ownerPort)]!;
  return {
    url: ports
      .slice(0, 3)
      .map((port) => `redis://127.0.0.1:${port}`)
      .join(","),
    async failover() {
      await stopAll([ownerChild]);
      await until("replica promoted", async () => (await redisCli(spare, "role")).startsWith("master"));
      await until("cluster ok", async () => (await redisCli(spare, "cluster", "info")).includes("cluster_state:ok"));
    },
    stop: () => stopAll(children),
  };
}

function inRange(range: string, slot: number): boolean {
  const [from, to] = range.split("-").map(Number);
  return from !== undefined && slot >= from && slot <= (to ?? from);
}
