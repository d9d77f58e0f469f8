/**
 * Requests the near tier answers alone (they never ask a fill of the coordinator) in a fleet:
 * `only-if-cached`, and a visitor's cookie request given a public copy. The fleet's copy is
 * the shared tier's, so a member whose memory lacks it answers them from Redis.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer } from "../../src/node/server.ts";
import { closeDeployed, deployBehind, send } from "./deployment.ts";
import { startRedisServer } from "./redis-server.ts";

afterEach(closeDeployed);

function counting(cacheControl: string) {
  const seen = { n: 0 };
  const handler = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => {
    req.resume();
    res.writeHead(200, { "cache-control": cacheControl, "content-type": "text/plain" }).end(`#${++seen.n}`);
  };
  return { seen, handler };
}

describe("a fleet member without the page in memory", () => {
  it("answers only-if-cached with the copy another member stored, not a 504", async () => {
    const origin = counting("max-age=600");
    const d = await deployBehind("fleet", origin.handler, {}, 2);
    const [a, b] = d.urls as [string, string];
    expect((await send(a, "/doc")).body).toBe("#1");
    // Before: b looked in its own memory only and answered 504, though the fleet held #1.
    const got = await send(b, "/doc", { headers: { "cache-control": "only-if-cached" } });
    expect(got.status).toBe(200);
    expect(got.body).toBe("#1");
    expect(origin.seen.n).toBe(1);
  });

  it("gives a cookie request the public copy another member stored, without asking the origin", async () => {
    const origin = counting("public, max-age=600");
    const d = await deployBehind("fleet", origin.handler, {}, 2);
    const [a, b] = d.urls as [string, string];
    expect((await send(a, "/style.css")).body).toBe("#1");
    // Before: b, with nothing in memory, relayed the signed-in visitor's request to the origin.
    const got = await send(b, "/style.css", { headers: { cookie: "session=v1" } });
    expect(got.body).toBe("#1");
    expect(got.cacheStatus).toContain("hit");
    expect(origin.seen.n).toBe(1);
  });

  it("still relays a cookie request when the shared copy is not public", async () => {
    const origin = counting("max-age=600");
    const d = await deployBehind("fleet", origin.handler, {}, 2);
    const [a, b] = d.urls as [string, string];
    expect((await send(a, "/account")).body).toBe("#1");
    const got = await send(b, "/account", { headers: { cookie: "session=v1" } });
    expect(got.body).toBe("#2");
    expect(got.cacheStatus).toContain("fwd=bypass");
  });
});

/**
 * The shared copy is read on these requests' way only while Redis answers: they were answered
 * without it before (relayed, or `504`), and an outage leaves them so. Found by the fleet's
 * seeded check (promises-fleet.test.ts, seed 21): with Redis restarting, each got herdless's own 500.
 */
describe("a fleet member whose Redis is gone", () => {
  const logger = jsonLogger("silent");
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function fleetOfTwo(cacheControl: string) {
    const redis = await startRedisServer();
    cleanup.push(() => redis.stop());
    const origin = counting(cacheControl);
    const server = createServer(origin.handler);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise((resolve) => (server.closeAllConnections(), server.close(() => resolve()))));
    const config = parseConfig({ origin: { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` } });
    const stacks = await Promise.all([0, 1].map(() => redisStack({ config, logger, redisUrl: redis.url })));
    const members = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
    cleanup.push(() => Promise.all(members.map((member) => member.close())).then(() => undefined));
    return { redis, origin, a: members[0]!.url, b: members[1]!.url };
  }

  it("killed: a cookie request is relayed and only-if-cached gets its 504, never a 500", async () => {
    const { redis, origin, a, b } = await fleetOfTwo("public, max-age=600");
    expect((await send(a, "/style.css")).body).toBe("#1");
    await redis.kill();
    // At once, while the member may not know Redis is gone yet, and again after.
    for (let round = 0; round < 2; round++) {
      const signedIn = await send(b, "/style.css", { headers: { cookie: "session=v1" } });
      expect(signedIn.status).toBe(200);
      expect(signedIn.body).toMatch(/^#[2-9]$/);
      const cachedOnly = await send(b, "/style.css", { headers: { "cache-control": "only-if-cached" } });
      expect(cachedOnly.status).toBe(504);
    }
    expect(origin.seen.n).toBe(3);
  }, 20_000);

  it("stalled: a cookie request is relayed once the read gives up on Redis, not refused", async () => {
    const { redis, a, b } = await fleetOfTwo("public, max-age=600");
    expect((await send(a, "/style.css")).body).toBe("#1");
    redis.pause();
    cleanup.push(async () => redis.resume());
    const signedIn = await send(b, "/style.css", { headers: { cookie: "session=v1" } });
    expect(signedIn.status).toBe(200);
    expect(signedIn.body).toBe("#2");
  }, 20_000);
});
