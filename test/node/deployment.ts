import { Agent, createServer, request, type IncomingHttpHeaders, type RequestListener } from "node:http";
import type { AddressInfo } from "node:net";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig, type ConfigInput } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack, type Stack } from "../../src/node/stack.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

/** Every member is reached under one site name, as behind a load balancer: one cache key per URL. */
const HOST = "site.test";
const logger = jsonLogger("silent");
const agent = new Agent({ keepAlive: true });

type TestConfig = Omit<ConfigInput, "origin"> & { origin?: Partial<ConfigInput["origin"]> };

/** One Node process (`node`), or `fleetSize` (three unless told) sharing a real redis-server (`fleet`), on one ManualClock. */
export interface Deployment {
  clock: ManualClock;
  stacks: Stack[];
  /** One base URL per process. */
  urls: string[];
  close(): Promise<void>;
}

export async function deploy(
  kind: "node" | "fleet",
  originUrl: string,
  config: TestConfig,
  fleetSize = 3,
): Promise<Deployment> {
  const clock = new ManualClock(Date.now());
  const parsed = parseConfig({ ...config, origin: { ...config.origin, url: originUrl } });
  let redis: RedisServer | undefined;
  let stacks: Stack[];
  if (kind === "node") stacks = [localStack({ config: parsed, logger, clock })];
  else {
    const server = (redis = await startRedisServer());
    stacks = await Promise.all(
      Array.from({ length: fleetSize }, () => redisStack({ config: parsed, logger, clock, redisUrl: server.url })),
    );
  }
  const servers: RunningServer[] = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
  return {
    clock,
    stacks,
    urls: servers.map((s) => s.url),
    async close() {
      await Promise.all(servers.map((s) => s.close()));
      await redis?.stop();
    },
  };
}

/** What {@link deployBehind} opened in the running test, closed last-opened first by {@link closeDeployed}. */
const opened: Array<() => Promise<void> | void> = [];

/**
 * {@link deploy} in front of an origin that `handler` answers, on a free port of 127.0.0.1.
 * Both are closed after the test by `afterEach(closeDeployed)`; the deployment's `close` may
 * also be called in the test (it closes once).
 */
export async function deployBehind(
  kind: "node" | "fleet",
  handler: RequestListener,
  config: TestConfig = {},
  fleetSize?: number,
): Promise<Deployment> {
  const origin = createServer(handler);
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  opened.push(() => {
    origin.closeAllConnections();
    origin.close();
  });
  const deployment = await deploy(
    kind,
    `http://127.0.0.1:${(origin.address() as AddressInfo).port}`,
    config,
    fleetSize,
  );
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= deployment.close());
  opened.push(close);
  return { ...deployment, close };
}

/** Closes what {@link deployBehind} opened (the deployment before its origin): `afterEach(closeDeployed)`. */
export async function closeDeployed(): Promise<void> {
  for (const close of opened.splice(0).reverse()) await close();
}

export interface Answer {
  status: number;
  body: string;
  cacheStatus: string;
  retryAfter: string | null;
  headers: IncomingHttpHeaders;
}

/**
 * A request under the site's name (fetch would send each member's own Host: one key per
 * member), by a raw client that can also send TRACE and `Expect: 100-continue`.
 */
export function send(
  base: string,
  path: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = { host: HOST, ...init.headers };
    const req = request(`${base}${path}`, { agent, method: init.method ?? "GET", headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body,
          cacheStatus: String(res.headers["cache-status"] ?? ""),
          retryAfter: (res.headers["retry-after"] as string | undefined) ?? null,
          headers: res.headers,
        }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(init.body);
  });
}
