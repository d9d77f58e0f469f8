/** The things the load generator can stand in front of the origin, each in its own processes. */
import { spawnSync } from "node:child_process";
import { Redis } from "ioredis";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Sample } from "./bare-node.ts";
import type { BenchOrigin } from "./origin.ts";
import { LOOP_DELAY_PRELOAD, startServer, TMP_DIR, type Server } from "./processes.ts";
import type { RuntimeName } from "./types.ts";
import { startNginx } from "./nginx.ts";
import { startVarnish } from "./varnish.ts";
import { builtBareNode, builtCli } from "./node-build.ts";
import { startWorkers, WORKER_DATA_CENTERS } from "./worker-runtime.ts";
import { freePort } from "../fixtures/free-port.ts";

export const FLEET_SIZE = 3;

export interface Runtime {
  name: RuntimeName;
  /** base URLs the load generator spreads its connections over */
  targets: string[];
  /** the processes whose CPU counts as "server CPU" (not the origin's) */
  servers: Server[];
  /** independent breakers in front of the origin: the outage budget is breakers × (max(failureThreshold, minFailingKeys, keys + 1) + ⌈(down − probeIntervalMs) ÷ probeIntervalMs⌉) */
  breakers: number;
  notes: string[];
  /**
   * worker only: bare0, the first of the bare Workers in the same workerd (its sample is set
   * with `PUT /__bench/sample`), the one the hit-path pairs load against one data center
   */
  bare?: string;
  /** fleet only: fault injection for the fault scenarios */
  faults?: { killRedis(): Promise<void>; restartRedis(): Promise<void>; killMember(index: number): Promise<void> };
  /** fleet only: Redis's own count of the commands it ran, by command (INFO commandstats), and its reset */
  redisCommands?: { reset(): Promise<void>; read(): Promise<Record<string, number>> };
  stop(): Promise<void>;
}

export interface RuntimeContext {
  origin: BenchOrigin;
  /** herdless config without origin.url */
  config: Record<string, unknown>;
  /** bare servers replay this response */
  sample?: Sample;
  label: string;
}

const HERDLESS_READY = /"msg":"herdless listening".*?"url":"([^"]+)"/;

export function hasRedisServer(): boolean {
  return spawnSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" }).status === 0;
}

function withOrigin(context: RuntimeContext): Record<string, unknown> {
  const origin = (context.config.origin as Record<string, unknown> | undefined) ?? {};
  return { ...context.config, origin: { ...origin, url: context.origin.url } };
}

export function writeConfig(context: RuntimeContext, config: Record<string, unknown>): string {
  mkdirSync(TMP_DIR, { recursive: true });
  const file = join(TMP_DIR, `${context.label}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/** The CLI as built for the package (node-build.ts); `nodeFlags` go before it (e.g. --cpu-prof). */
export function startHerdless(
  name: string,
  configFile: string,
  redisUrl?: string,
  nodeFlags: string[] = [],
): Promise<Server> {
  const args = ["--config", configFile, "--port", "0", ...(redisUrl ? ["--redis", redisUrl] : [])];
  return startServer({
    name,
    command: process.execPath,
    args: [...LOOP_DELAY_PRELOAD, ...nodeFlags, builtCli(), ...args],
    readyPattern: HERDLESS_READY,
  });
}

/** INFO commandstats of the bench's Redis as { command: calls }, e.g. { evalsha: 120, hmget: 40 }; `reset` zeroes it first. */
async function commandCalls(port: number, reset = false): Promise<Record<string, number>> {
  const client = new Redis({ host: "127.0.0.1", port, lazyConnect: true });
  try {
    await client.connect();
    if (reset) await client.config("RESETSTAT");
    const calls: Record<string, number> = {};
    for (const match of (await client.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
      if (!/^(info|config|client|hello)/.test(match[1]!)) calls[match[1]!] = Number(match[2]);
    return calls;
  } finally {
    client.disconnect();
  }
}

async function stopAll(servers: Server[]): Promise<void> {
  await Promise.all(servers.map((s) => s.stop()));
}

/** The bare baseline built to plain JavaScript (see `builtBareNode`), with the same preload as herdless. */
function startBareNode(sample: Sample): Promise<Server> {
  return startServer({
    name: "bare node",
    command: process.execPath,
    args: [...LOOP_DELAY_PRELOAD, builtBareNode(), JSON.stringify(sample)],
    readyPattern: /bare node listening on (http:\/\/\S+)/,
  });
}

/** Starts `name` in front of the origin; the caller stops it. */
export async function startRuntime(name: RuntimeName, context: RuntimeContext): Promise<Runtime> {
  const base = { name, notes: [] as string[] };
  switch (name) {
    case "direct":
      return { ...base, targets: [context.origin.url], servers: [], breakers: 0, stop: async () => undefined };
    case "node": {
      const server = await startHerdless("herdless", writeConfig(context, withOrigin(context)));
      return { ...base, targets: [server.ready], servers: [server], breakers: 1, stop: () => stopAll([server]) };
    }
    case "fleet": {
      const port = await freePort();
      const startRedis = () =>
        startServer({
          name: "redis-server",
          command: "redis-server",
          args: [
            "--port",
            String(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "notice",
          ],
          readyPattern: /Ready to accept connections/,
        });
      let redis = await startRedis();
      const redisUrl = `redis://127.0.0.1:${port}`;
      const file = writeConfig(context, withOrigin(context));
      const members: Server[] = [];
      try {
        for (let i = 0; i < FLEET_SIZE; i++) members.push(await startHerdless(`herdless fleet ${i}`, file, redisUrl));
      } catch (error) {
        await stopAll([...members, redis]);
        throw error;
      }
      return {
        ...base,
        targets: members.map((m) => m.ready),
        servers: [...members, redis],
        // `--redis` runs src/node/fleet-stack.ts: one Redis origin guard for the whole fleet,
        // so one cap and one breaker (a member falls back to its own only while Redis is away).
        breakers: 1,
        notes: [
          `${FLEET_SIZE} herdless processes + redis-server; server CPU includes redis-server`,
          `one fleet-wide origin guard in Redis (src/node/fleet-stack.ts): one cap of maxConcurrency and one breaker for the ${FLEET_SIZE} processes, and a Redis purge registry`,
        ],
        faults: {
          killRedis: async () => redis.kill(),
          restartRedis: async () => {
            redis = await startRedis();
          },
          killMember: async (index) => members[index]!.kill(),
        },
        redisCommands: {
          reset: async () => void (await commandCalls(port, true)),
          read: () => commandCalls(port),
        },
        stop: () => stopAll([...members, redis]),
      };
    }
    case "nginx": {
      // The ready probe went through nginx to the origin: it is not an origin request of the run (reset after).
      const { server, url } = await startNginx(context.origin.url, TMP_DIR);
      return {
        ...base,
        targets: [url],
        servers: [server],
        breakers: 0,
        notes: ["nginx (optional peer): proxy_cache with proxy_cache_lock, 1 worker process"],
        stop: () => stopAll([server]),
      };
    }
    case "varnish": {
      const { server, url } = await startVarnish(context.origin.url, TMP_DIR);
      return {
        ...base,
        targets: [url],
        servers: [server],
        breakers: 0,
        notes: [
          "varnish (optional peer): its waiting list, grace 1 h kept on a 5xx, keep 1 h, its default thread pools",
        ],
        stop: () => stopAll([server]),
      };
    }
    case "bare-node":
    case "bare-fleet": {
      const sample = context.sample;
      if (sample === undefined) throw new Error(`${name} needs a sample response`);
      // bare-fleet: as many bare servers as the fleet has members, the connections spread alike.
      const servers: Server[] = [];
      try {
        for (let i = 0; i < (name === "bare-fleet" ? FLEET_SIZE : 1); i++) servers.push(await startBareNode(sample));
      } catch (error) {
        await stopAll(servers);
        throw error;
      }
      return {
        ...base,
        targets: servers.map((s) => s.ready),
        servers,
        breakers: 0,
        notes: name === "bare-fleet" ? [`${FLEET_SIZE} bare node servers, the fleet's connections spread alike`] : [],
        stop: () => stopAll(servers),
      };
    }
    case "worker":
    case "bare-worker": {
      const workers = await startWorkers({
        originUrl: context.origin.url,
        config: context.config,
        ...(context.sample ? { sample: context.sample } : {}),
      });
      // bare-worker: one bare Worker per data center, the connections spread alike (see worker-host.ts).
      const targets = name === "worker" ? workers.dataCenters : workers.bare;
      if (targets.length === 0) {
        await workers.server.stop();
        throw new Error("bare-worker needs a sample response");
      }
      return {
        ...base,
        targets,
        servers: [workers.server],
        ...(workers.bare[0] === undefined ? {} : { bare: workers.bare[0] }),
        breakers: 1,
        notes:
          name === "worker"
            ? [
                `${WORKER_DATA_CENTERS} simulated data centers (own Cache API cache and isolate memory tier each) sharing one KeyCoordinatorObject namespace, one OriginGuardObject (1 breaker) and one PurgeRegistryObject, one workerd`,
              ]
            : [
                `${WORKER_DATA_CENTERS} bare Workers (one isolate each) in the same workerd, the connections spread over them as over herdless's data centers`,
              ],
        stop: () => workers.server.stop(),
      };
    }
  }
}
