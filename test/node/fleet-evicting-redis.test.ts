import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";
import { send } from "./deployment.ts";

/**
 * A Redis at its `maxmemory` whose policy evicts any key (`allkeys-lru`), against the advice of
 * docs/node.md ("Redis memory"): it takes the fleet's coordination keys with the entries, the
 * origin guard's marker among them, nearly at every write. Each loss of the marker held new
 * origin requests back, fleet-wide, for the wait after a loss (guard-epoch.ts), and the next
 * write lost it again: every miss queued until `origin.queueTimeoutMs` and got a `503`, and
 * the origin, up and healthy, was asked nothing.
 */
const logger = jsonLogger("silent");
let redis: RedisServer;
let origin: Server;
let members: RunningServer[];
let asked = 0;

beforeAll(async () => {
  redis = await startRedisServer();
  origin = createServer((req, res) => {
    asked++;
    req.resume();
    res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain" }).end(`page ${req.url}`);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const config = parseConfig({
    origin: {
      url: `http://127.0.0.1:${(origin.address() as AddressInfo).port}`,
      maxConcurrency: 2,
      queueTimeoutMs: 1_500,
    },
    fleet: { minProcesses: 2 },
  });
  const stacks = await Promise.all(
    [0, 1].map(() => redisStack({ config, logger, redisUrl: redis.url, prefix: "evict:" })),
  );
  members = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
});

afterAll(async () => {
  await Promise.all(members.map((member) => member.close()));
  await redis.stop();
  await new Promise((resolve) => origin.close(resolve));
});

describe("a fleet whose Redis evicts its coordination keys (maxmemory below what it holds, allkeys-lru)", () => {
  it("misses reach the origin within each member's share of the cap, not a 503 each for want of the guard's marker", async () => {
    const admin = new Redis(redis.url);
    await admin.config("SET", "maxmemory", "1mb");
    await admin.config("SET", "maxmemory-policy", "allkeys-lru");
    admin.disconnect();
    const answers = [];
    for (let page = 0; page < 6; page++) answers.push(await send(members[page % 2]!.url, `/page-${page}`));
    expect(answers.map((answer) => [answer.status, answer.body])).toEqual(
      Array.from({ length: 6 }, (_, page) => [200, `page /page-${page}`]),
    );
    expect(asked).toBe(6);
  }, 30_000);
});
