import { createServer, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { RedisConnection } from "../../src/node/redis/connection.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

/**
 * A request waiting on another member's fill when Redis goes away is served as without Redis
 * at once (docs/node.md, "When Redis goes away"), not left waiting `coordinator.lockLeaseMs`
 * for the fill's news, which the outage lost. Found by the fleet's seeded check
 * (promises-fleet.test.ts): clients of a Redis restart went unanswered for 15 s.
 */
const logger = jsonLogger("silent");
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** An origin that holds `/page` until `release()`, then answers every request at once. */
async function heldOrigin() {
  const held: ServerResponse[] = [];
  let released = false;
  let asked = 0;
  const answer = (res: ServerResponse) => res.writeHead(200, { "cache-control": "max-age=60" }).end("page");
  const server = createServer((req, res) => void (asked++, released ? answer(res) : held.push(res)));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => new Promise((resolve) => server.close(() => resolve())));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held: () => held.length,
    asked: () => asked,
    release: () => ((released = true), held.splice(0).forEach(answer)),
  };
}

function get(server: RunningServer): Promise<{ status: number; at: number }> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}/page`, { headers: { host: "site.test" } }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, at: performance.now() }));
    });
    req.on("error", reject);
    req.end();
  });
}

async function fleetOfTwo(redis: RedisServer, originUrl: string) {
  const config = parseConfig({
    origin: { url: originUrl, timeoutMs: 3_000 },
    coordinator: { lockLeaseMs: 8_000, waitTimeoutMs: 10_000 },
  });
  const stacks = await Promise.all([0, 1].map(() => redisStack({ config, logger, redisUrl: redis.url, prefix: "w:" })));
  const servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
  cleanup.push(() => Promise.all(servers.map((server) => server.close())).then(() => undefined));
  return Object.assign(servers, { stacks });
}

it("Redis killed while a member waits on another's fill: its client is answered at once, not after the lease", async () => {
  const redis = await startRedisServer();
  cleanup.push(() => redis.stop());
  const origin = await heldOrigin();
  const [a, b] = await fleetOfTwo(redis, origin.url);
  const watcher = new RedisConnection({ url: redis.url });
  await watcher.ready();

  const leader = get(a!);
  await expect.poll(origin.held, { timeout: 5_000, interval: 10 }).toBe(1);
  const waiter = get(b!);
  // b waits on a's fill: subscribed to the key's channel.
  await expect
    .poll(() => watcher.client.pubsub("NUMSUB", "w:filled:GET http://site.test/page"), { timeout: 5_000, interval: 10 })
    .toEqual(["w:filled:GET http://site.test/page", 1]);
  await watcher.close();

  const killed = performance.now();
  await redis.kill();
  origin.release();
  expect((await leader).status).toBe(200);
  const answered = await waiter;
  expect(answered.status).toBe(200);
  // Before the fix: 8 s (the wait's bound, coordinator.lockLeaseMs), the fill's news lost with Redis.
  expect(answered.at - killed).toBeLessThan(2_000);
}, 20_000);

/**
 * A Redis that stalls (a fork for `BGSAVE`, `CLIENT PAUSE`, `SIGSTOP`) keeps its sockets open:
 * each member gives up on it at its command timeout (1 s) and serves on its own.
 */
describe("Redis stalled while a fill is under way", () => {
  it("the member filling gives its clients the origin's answer, which Redis could not take: the origin is asked once, not twice", async () => {
    const redis = await startRedisServer();
    cleanup.push(() => redis.stop());
    const origin = await heldOrigin();
    const fleet = await fleetOfTwo(redis, origin.url);
    const leader = get(fleet[0]!);
    await expect.poll(origin.held, { timeout: 5_000, interval: 10 }).toBe(1);
    redis.pause();
    cleanup.push(async () => redis.resume());
    await expect.poll(() => fleet.stacks[0]!.mode(), { timeout: 5_000, interval: 20 }).toBe("degraded");
    origin.release();
    expect((await leader).status).toBe(200);
    // Before: the write to Redis failed the fill after its answer came, and the member asked the origin again on its own.
    expect(origin.asked()).toBe(1);
  }, 20_000);

  it("a member waiting on another's fill is answered once it gives up on Redis, not after the lease", async () => {
    const redis = await startRedisServer();
    cleanup.push(() => redis.stop());
    const origin = await heldOrigin();
    const fleet = await fleetOfTwo(redis, origin.url);
    const watcher = new RedisConnection({ url: redis.url });
    await watcher.ready();
    const leader = get(fleet[0]!);
    await expect.poll(origin.held, { timeout: 5_000, interval: 10 }).toBe(1);
    const waiter = get(fleet[1]!);
    await expect
      .poll(() => watcher.client.pubsub("NUMSUB", "w:filled:GET http://site.test/page"), {
        timeout: 5_000,
        interval: 10,
      })
      .toEqual(["w:filled:GET http://site.test/page", 1]);
    await watcher.close();
    redis.pause();
    cleanup.push(async () => redis.resume());
    await expect.poll(() => fleet.stacks[1]!.mode(), { timeout: 5_000, interval: 20 }).toBe("degraded");
    const gaveUp = performance.now();
    origin.release();
    expect((await leader).status).toBe(200);
    const answered = await waiter;
    expect(answered.status).toBe(200);
    // Before: 8 s (coordinator.lockLeaseMs), waiting on the subscriber, which a stall leaves open, for news the stall lost.
    expect(answered.at - gaveUp).toBeLessThan(2_000);
  }, 30_000);
});
