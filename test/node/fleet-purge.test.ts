import { request } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import type { RedisPurgeRegistry } from "../../src/node/redis/purge.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { redisTestConnection } from "./redis-server.ts";

const HOST = "site.test";
const TOKEN = "fleet-purge-token-0123456789";
const logger = jsonLogger("silent");

const redis = redisTestConnection();
let origin: FragileOrigin;
let clock: ManualClock;
let servers: RunningServer[];
let stacks: Awaited<ReturnType<typeof redisStack>>[];
let prefix: string;

beforeEach(async () => {
  origin = await startFragileOrigin({
    cacheControl: "max-age=60, stale-if-error=600",
    extraHeaders: { "cache-tag": "catalog" },
  });
  clock = new ManualClock(Date.now());
  const config = parseConfig({ origin: { url: origin.url }, admin: { token: TOKEN, purgePropagationMs: 50 } });
  prefix = redis.prefix();
  stacks = await Promise.all(
    [0, 1, 2].map(() => redisStack({ config, logger, clock, redisUrl: redis.server.url, prefix })),
  );
  servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
});

afterEach(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await origin.close();
});

/** node:http, since fetch may not set Host: every member is reached under one site name, as behind a load balancer. */
function send(
  server: RunningServer,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
) {
  return new Promise<{ status: number; body: string; cacheStatus: string }>((resolve, reject) => {
    const req = request(`${server.url}${path}`, { method, headers: { host: HOST, ...headers } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: text, cacheStatus: String(res.headers["cache-status"] ?? "") }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

const get = (server: RunningServer, path: string) => send(server, "GET", path);

async function purge(body: unknown, token = TOKEN) {
  const res = await send(
    servers[1]!,
    "POST",
    "/__herdless/purge",
    { authorization: `Bearer ${token}`, "content-type": "application/json" },
    JSON.stringify(body),
  );
  // Entries stored after this instant are newer than the purge.
  clock.advance(1);
  return res.status;
}

/** Warms `paths` on every member and returns the bodies they serve. */
async function warm(paths: string[]): Promise<Record<string, string>> {
  const bodies: Record<string, string> = {};
  for (const path of paths) for (const server of servers) bodies[path] = (await get(server, path)).body;
  for (const path of paths) for (const server of servers) expect((await get(server, path)).cacheStatus).toMatch(/hit/);
  return bodies;
}

const hardCases: [string, unknown][] = [
  ["url", { urls: [`http://${HOST}/a`] }],
  // TLS ends before herdless: the page clients know as https:// is the one purged.
  ["url as clients see it (https)", { urls: [`https://${HOST}/a?utm_source=mail`] }],
  ["tag", { tags: ["catalog"] }],
  ["all", { all: true }],
];

describe("purge across a three-process fleet", () => {
  it.each(hardCases)("hard purge by %s: the purged version is never served again, anywhere", async (_, body) => {
    const old = await warm(["/a"]);
    origin.bump("/a");
    const requestsBefore = origin.stats().requests;
    expect(await purge(body)).toBe(200);
    const after = await Promise.all(servers.map((s) => get(s, "/a")));
    for (const res of after) {
      expect(res.status).toBe(200);
      expect(res.body).not.toBe(old["/a"]);
    }
    expect(origin.stats().requests - requestsBefore).toBe(1);
  });

  it("members whose purge re-read is stalled (a busy event loop) are named: the purge is not confirmed, and they still never serve the purged version", async () => {
    const old = await warm(["/a"]);
    origin.bump("/a");
    // Members 0 and 2 never re-read on their timer again: they do not confirm; the propagation bound holds them.
    for (const i of [0, 2]) (stacks[i]!.purges as RedisPurgeRegistry).stop();
    const body = { urls: [`http://${HOST}/a`] };
    const res = await send(
      servers[1]!,
      "POST",
      "/__herdless/purge",
      { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      JSON.stringify(body),
    );
    clock.advance(1);
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toEqual({
      error: expect.stringMatching(/^herdless admin: purge recorded, but 2 process\(es\) of the fleet had not read it/),
      recorded: { ...body, soft: false },
      unconfirmed: [expect.any(String), expect.any(String)],
    });
    for (const server of servers) expect((await get(server, "/a")).body).not.toBe(old["/a"]);
  });

  it("a hard purge is not undone by stale-if-error when the origin then fails", async () => {
    const old = await warm(["/a"]);
    origin.set({ down: true });
    expect(await purge({ urls: [`http://${HOST}/a`] })).toBe(200);
    for (const server of servers) {
      const res = await get(server, "/a");
      expect(res.body).not.toBe(old["/a"]);
      expect(res.status).toBeGreaterThanOrEqual(500);
    }
  });

  const softCases: [string, unknown][] = [
    ["url", { urls: [`http://${HOST}/a`, `http://${HOST}/b`], soft: true }],
    ["tag", { tags: ["catalog"], soft: true }],
    ["all", { all: true, soft: true }],
  ];

  it.each(softCases)("soft purge by %s: stale served while exactly one revalidation per key runs", async (_, body) => {
    const old = await warm(["/a", "/b"]);
    const before = origin.stats();
    expect(await purge(body)).toBe(200);
    const during = await Promise.all(
      servers.flatMap((s) => ["/a", "/b"].map((p) => get(s, p).then((r) => ({ ...r, path: p })))),
    );
    for (const res of during) {
      expect(res.status).toBe(200);
      expect(res.body).toBe(old[res.path]);
    }
    expect(during.some((r) => r.cacheStatus.includes("detail=stale-while-revalidate"))).toBe(true);
    for (let i = 0; i < 200 && origin.stats().requests < before.requests + 2; i++)
      await new Promise((r) => setTimeout(r, 10));
    // More traffic after the revalidations: nothing further reaches the origin.
    await Promise.all(servers.flatMap((s) => ["/a", "/b", "/a"].map((p) => get(s, p))));
    const after = origin.stats();
    expect(after.requests - before.requests).toBe(2);
    expect((after.byStatus["304"] ?? 0) - (before.byStatus["304"] ?? 0)).toBe(2);
  });

  it.each([
    ["a later release's shape", JSON.stringify({ v: 2, marks: [] })],
    ["a list with no keys", "{}"],
    ["no JSON", "purges"],
  ])(
    "a purge list in Redis of %s (a rolling deploy, a hand edit) leaves hits hits everywhere, and the next purge is honoured",
    async (_, snapshot) => {
      const old = await warm(["/a"]);
      await redis.connection.client.hset(`${prefix}purges`, "version", "9", "token", "9.later", "snapshot", snapshot);
      // Every member has read it: each records the list it holds after a read.
      const readKey = `${prefix}purges:read`;
      for (let i = 0; i < 200; i++) {
        const reads = Object.values(await redis.connection.client.hgetall(readKey));
        if (reads.length === 3 && reads.every((stamp) => stamp === "9.later")) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      for (const server of servers) expect(await get(server, "/a")).toMatchObject({ status: 200, body: old["/a"] });
      origin.bump("/a");
      expect(await purge({ urls: [`http://${HOST}/a`] })).toBe(200);
      for (const server of servers) {
        const res = await get(server, "/a");
        expect([res.status, res.body === old["/a"]]).toEqual([200, false]);
      }
    },
  );

  it.each([
    ["a wrong token", "wrong-token-0123456789"],
    ["no token", ""],
  ])("%s: 401 and no effect", async (_, token) => {
    await warm(["/a"]);
    const requestsBefore = origin.stats().requests;
    expect(await purge({ all: true }, token)).toBe(401);
    for (const server of servers) expect((await get(server, "/a")).cacheStatus).toMatch(/^herdless; hit/);
    expect(origin.stats().requests).toBe(requestsBefore);
  });
});

describe("purge while Redis is down", () => {
  it("answers 503 naming the failure, as the Worker does, not a 500 internal error", async () => {
    await redis.server.kill();
    try {
      const res = await send(
        servers[1]!,
        "POST",
        "/__herdless/purge",
        { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        JSON.stringify({ all: true }),
      );
      expect(res.status).toBe(503);
      expect(JSON.parse(res.body)).toEqual({ error: expect.stringMatching(/^herdless admin: redis /) });
    } finally {
      await redis.server.restart();
    }
  });
});
