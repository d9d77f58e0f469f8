import { request } from "node:http";
import { afterEach, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";
import { stallingProxy } from "./stalling-proxy.ts";
import { countingOrigin } from "./counting-origin.ts";

/**
 * Redis stalls (a fork for BGSAVE, a slow fsync, SIGSTOP) while a member's lease acquire is in
 * its socket: the member gives up after its command timeout and serves on its own, and the
 * acquire runs when Redis resumes, taking the key's lease for a token nobody knows. Before,
 * every other member's request for the key then waited out that lease (`coordinator.lockLeaseMs`).
 */
const logger = jsonLogger("silent");
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

function get(server: RunningServer): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}/page`, { headers: { host: "site.test" } }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Members a (through `proxy`) and b (straight to Redis), and their stacks. */
async function fleetOfTwo(redis: RedisServer, proxyUrl: string, originUrl: string) {
  const config = parseConfig({
    origin: { url: originUrl, timeoutMs: 3_000 },
    coordinator: { lockLeaseMs: 8_000, waitTimeoutMs: 10_000 },
  });
  const stacks = await Promise.all(
    [proxyUrl, redis.url].map((redisUrl) => redisStack({ config, logger, redisUrl, prefix: "g:" })),
  );
  const servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
  cleanup.push(() => Promise.all(servers.map((server) => server.close())).then(() => undefined));
  return { a: servers[0]!, b: servers[1]!, stacks };
}

const MARKER = "fence:{GET http://site.test/page}";

it("an acquire Redis ran after its member gave up on it: the other members' clients are answered at once, not after the lease", async () => {
  const redis = await startRedisServer();
  cleanup.push(() => redis.stop());
  const origin = await countingOrigin(cleanup);
  const proxy = await stallingProxy(redis, MARKER);
  const { a, b, stacks } = await fleetOfTwo(redis, proxy.url, origin.url);

  // a's acquire stalls; a gives up after the command timeout (1 s) and serves on its own.
  const first = await get(a);
  expect(first.status).toBe(200);
  expect(first.ms).toBeGreaterThan(900);
  expect(proxy.ran()).toBe(true);
  expect(origin.asked()).toBe(1);
  await expect.poll(() => stacks[0]!.mode(), { timeout: 5_000, interval: 20 }).toBe("redis");

  // Before: b's client waited 8 s (the lease), then b asked the origin.
  const other = await get(b);
  expect(other).toMatchObject({ status: 200 });
  expect(other.ms).toBeLessThan(2_000);
  const again = await get(a);
  expect(again).toMatchObject({ status: 200 });
  expect(again.ms).toBeLessThan(2_000);
  expect(origin.asked()).toBe(2);
});

it("an acquire that reaches Redis only after its member is back takes nothing: the other members' clients are answered at once", async () => {
  const redis = await startRedisServer();
  cleanup.push(() => redis.stop());
  const origin = await countingOrigin(cleanup);
  let resume = () => undefined as void;
  const proxy = await stallingProxy(redis, MARKER, new Promise<void>((resolve) => (resume = resolve)));
  const { a, b, stacks } = await fleetOfTwo(redis, proxy.url, origin.url);

  expect((await get(a)).status).toBe(200);
  await expect.poll(() => stacks[0]!.mode(), { timeout: 5_000, interval: 20 }).toBe("redis");
  // a, back, has done what it does for the acquire it gave up on; only now does that acquire run.
  await new Promise((resolve) => setTimeout(resolve, 500));
  resume();
  await expect.poll(proxy.ran, { timeout: 5_000, interval: 10 }).toBe(true);

  const other = await get(b);
  expect(other).toMatchObject({ status: 200 });
  expect(other.ms).toBeLessThan(2_000);
  expect(origin.asked()).toBe(2);
});
