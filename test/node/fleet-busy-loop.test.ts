import { request } from "node:http";
import { Socket } from "node:net";
import { afterEach, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer } from "./redis-server.ts";
import { countingOrigin } from "./counting-origin.ts";

/**
 * A member whose event loop is busy past the Redis command timeout (a long synchronous task,
 * a 2-core machine under heavy load) while its lease acquire is out: Redis answered at once,
 * the reply waited in the socket. Before, the timeout fired first: the member took Redis for
 * gone, served on its own (local single-flight), and the other member asked the origin again.
 */
const logger = jsonLogger("silent");
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

function get(server: RunningServer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}/page`, { headers: { host: "site.test" } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

/** The first time a socket of this process writes `marker`, the event loop is held `ms` right after. */
function busyAfterWriting(marker: string, ms: number): void {
  const write = Socket.prototype.write;
  const restore = () => void (Socket.prototype.write = write);
  cleanup.push(restore);
  Socket.prototype.write = function (this: Socket, ...args: Parameters<Socket["write"]>) {
    const written = write.apply(this, args);
    if (String(args[0]).includes(marker)) {
      restore();
      const until = performance.now() + ms;
      while (performance.now() < until);
    }
    return written;
  } as Socket["write"];
}

it("a member busy 1.5 s with its lease acquire out (command timeout 1 s) stays on Redis: the other member is served its fetch, the origin is asked once", async () => {
  const redis = await startRedisServer();
  cleanup.push(() => redis.stop());
  const origin = await countingOrigin(cleanup);
  const config = parseConfig({ origin: { url: origin.url } });
  const stacks = await Promise.all([0, 1].map(() => redisStack({ config, logger, redisUrl: redis.url, prefix: "b:" })));
  const [a, b] = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
  cleanup.push(() => Promise.all([a!.close(), b!.close()]).then(() => undefined));
  const modes: string[] = [];
  const watch = setInterval(() => modes.push(stacks[0]!.mode()), 5);
  cleanup.push(() => clearInterval(watch));

  busyAfterWriting("fence:{GET http://site.test/page}", 1_500);
  expect(await get(a!)).toBe(200);
  // Before: "degraded" for a moment, and a's fill ran outside the fleet.
  expect(modes.filter((mode) => mode !== "redis")).toEqual([]);
  expect(await get(b!)).toBe(200);
  // Before: 2 (b found neither a's entry nor its lease in Redis).
  expect(origin.asked()).toBe(1);
});
