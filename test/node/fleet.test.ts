import type { ChildProcess } from "node:child_process";
import { Agent, request } from "node:http";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import type { Stack } from "../../src/node/stack.ts";
import { launchCli } from "./cli-process.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

/** Every member is reached under one site name, as behind a load balancer: one cache key per URL. */
const HOST = "site.test";
const CACHE_CONTROL = "max-age=10, stale-while-revalidate=30, stale-if-error=300";
const logger = jsonLogger("silent");
const agent = new Agent({ keepAlive: true });

interface Answer {
  status: number;
  body: string;
  cacheStatus: string;
}

function get(base: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { agent, headers: { host: HOST } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body, cacheStatus: String(res.headers["cache-status"] ?? "") }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** A POST with a small body; its status. */
function post(base: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method: "POST", headers: { host: HOST }, agent }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end("edit");
  });
}

/** `n` concurrent requests, dealt round-robin over the members. Failures are answers with status 0. */
function spread(urls: string[], n: number, path: string): Promise<Answer[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      get(urls[i % urls.length]!, path).catch((error: unknown) => ({
        status: 0,
        body: String(error),
        cacheStatus: "",
      })),
    ),
  );
}

/** Polls a condition that background work or a reconnect makes true; bounded, never a fixed sleep. */
async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function expectOneBody(answers: Answer[], body?: string): void {
  expect(answers.filter((a) => a.status !== 200)).toEqual([]);
  const expected = body ?? answers[0]!.body;
  expect(answers.every((a) => a.body === expected)).toBe(true);
}

describe("a fleet of three herdless stacks sharing one Redis", () => {
  let redis: RedisServer;
  let origin: FragileOrigin;
  let clock: ManualClock;
  let stacks: Stack[];
  let servers: RunningServer[];
  let urls: string[];

  beforeEach(async () => {
    [redis, origin] = await Promise.all([
      startRedisServer(),
      startFragileOrigin({ cacheControl: CACHE_CONTROL, latencyMs: 30 }),
    ]);
    clock = new ManualClock(Date.now());
    const config = parseConfig({ origin: { url: origin.url }, breaker: { failureThreshold: 1_000 } });
    stacks = await Promise.all([0, 1, 2].map(() => redisStack({ config, logger, clock, redisUrl: redis.url })));
    servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
    urls = servers.map((s) => s.url);
  });

  afterEach(async () => {
    await Promise.all(servers.map((s) => s.close()));
    await Promise.all([redis.stop(), origin.close()]);
  });

  const primary = (path: string) => `GET http://${HOST}${path}`;
  const warm = async (path: string) => {
    for (const url of urls) expect((await get(url, path)).status).toBe(200);
  };

  it("RFC 9111 §4.4: a POST through one member drops the fleet's shared copy: a member without its own copy fetches anew", async () => {
    expect((await get(urls[0]!, "/item")).status).toBe(200);
    expect(await stacks[0]!.near.get(primary("/item"))).toBeDefined();
    expect(await post(urls[1]!, "/item")).toBeLessThan(400);
    clock.advance(1); // an answer asked in the POST's own millisecond counts as asked before it: kept nowhere
    const after = await get(urls[2]!, "/item");
    // Fetched and stored anew, not handed the shared copy the POST made obsolete.
    expect(after.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200; ttl=\d+; stored$/);
  });

  it("RFC 9111 §4.4: after a POST through one member, no member serves its own copy in memory: the writer's next read through any member is the new page", async () => {
    await warm("/article");
    for (const stack of stacks) expect(await stack.near.get(primary("/article"))).toBeDefined();
    origin.bump("/article");
    expect(await post(urls[1]!, "/article")).toBeLessThan(400);
    // The news reaches the other members' memory a moment after the POST's answer.
    await until("every member marked /article", () =>
      stacks.every((stack) => stack.near.getSync(primary("/article"))?.invalidatedAt !== undefined),
    );
    const reads = await Promise.all(urls.map((url) => get(url, "/article")));
    expect(reads.map((read) => [read.status, read.body.slice(0, 12)])).toEqual(Array(3).fill([200, "v2 /article "]));
    expect(reads.filter((read) => read.cacheStatus.includes("hit"))).toEqual([]);
  });

  it("300 concurrent requests over three members for a cold key make exactly 1 origin request", async () => {
    const answers = await spread(urls, 300, "/cold");
    expectOneBody(answers);
    expect(answers[0]!.body).toMatch(/^v1 \/cold /);
    expect(origin.stats().requests).toBe(1);
    expect(stacks.every((s) => s.mode() === "redis")).toBe(true);
  });

  it("RFC 9111 §4: a no-cache answer is its requester's alone: 30 concurrent requests over three members make 30 origin requests, none collapsed", async () => {
    origin.set({ cacheControl: "no-cache" });
    const answers = await spread(urls, 30, "/validated");
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(answers.filter((a) => /collapsed/.test(a.cacheStatus))).toEqual([]);
    expect(origin.stats().requests).toBe(30);
  });

  it("inside stale-while-revalidate every member answers stale and 1 revalidation reaches the origin in total", async () => {
    await warm("/page");
    expect(origin.stats().requests).toBe(1);
    clock.advance(12_000);
    const stale = await spread(urls, 300, "/page");
    expectOneBody(stale);
    // Nobody waits: every answer is a hit; each member's first ones are stale (later ones may see the refresh land).
    expect(stale.every((a) => a.cacheStatus.startsWith("herdless; hit; ttl="))).toBe(true);
    for (let member = 0; member < 3; member++) {
      const served = stale.filter((_, i) => i % 3 === member).map((a) => a.cacheStatus);
      expect(served).toContain("herdless; hit; ttl=-2; detail=stale-while-revalidate");
    }
    // Every member's background refresh lands a fresh entry in its own LRU: then all work is done.
    await until("every member holds a fresh entry", () =>
      stacks.every((s) => (s.near.getSync(primary("/page"))?.staleAt ?? 0) > clock.now()),
    );
    expect(origin.stats().requests).toBe(2);
    expect(origin.stats().byStatus["304"]).toBe(1);
    const after = await spread(urls, 300, "/page");
    expectOneBody(after, stale[0]!.body);
    expect(after.every((a) => /^herdless; hit; ttl=(9|10)$/.test(a.cacheStatus))).toBe(true);
    expect(origin.stats().requests).toBe(2);
  });

  it("past stale-while-revalidate, 300 requests over three members wait on exactly 1 origin request", async () => {
    await warm("/page");
    clock.advance(45_000);
    origin.bump("/page");
    const answers = await spread(urls, 300, "/page");
    expectOneBody(answers);
    expect(answers[0]!.body).toMatch(/^v2 \/page /);
    expect(origin.stats().requests).toBe(2);
    expect(origin.stats().byStatus["200"]).toBe(2);
  });

  it("keeps serving with Redis killed (cached, stale-if-error, uncached), reports degraded, and coordinates fleet-wide again after restart", async () => {
    const long = "/long?cc=max-age%3D3600";
    await warm(long);
    await warm("/short");
    expect(origin.stats().requests).toBe(2);

    await redis.kill();
    // Before anyone noticed the outage, and after: cached keys are answered from each LRU.
    expectOneBody(await spread(urls, 150, long));
    await until("every member reports degraded", () => stacks.every((s) => s.mode() === "degraded"));
    clock.advance(60_000);
    origin.set({ down: true });

    const cached = await spread(urls, 150, long);
    expectOneBody(cached);
    expect(cached.every((a) => /^herdless; hit; ttl=\d+$/.test(a.cacheStatus))).toBe(true);
    const hidden = await spread(urls, 150, "/short");
    expectOneBody(hidden);
    expect(hidden[0]!.body).toMatch(/^v1 \/short /);
    expect(hidden.every((a) => a.cacheStatus.includes("detail=stale-if-error"))).toBe(true);

    origin.set({ down: false });
    const uncached = await spread(urls, 150, "/during-outage");
    expectOneBody(uncached);
    const perProcess = origin.stats().byPath["/during-outage"] ?? 0;
    expect(perProcess).toBeGreaterThanOrEqual(1);
    expect(perProcess).toBeLessThanOrEqual(3);

    for (const url of urls) {
      const text = await (await fetch(`${url}/__herdless/metrics`)).text();
      expect(text).toContain('herdless_coordination_mode{mode="degraded"} 1');
      expect(text).toContain('herdless_coordination_mode{mode="redis"} 0');
    }

    await redis.restart();
    await until("every member reports redis", () => stacks.every((s) => s.mode() === "redis"));
    const metrics = await (await fetch(`${urls[1]}/__herdless/metrics`)).text();
    expect(metrics).toContain('herdless_coordination_mode{mode="redis"} 1');
    const answers = await spread(urls, 300, "/after-restart");
    expectOneBody(answers);
    expect(origin.stats().byPath["/after-restart"]).toBe(1);
  });
});

describe("three herdless processes (the CLI) sharing one Redis", () => {
  let redis: RedisServer;
  let origin: FragileOrigin;
  const children: ChildProcess[] = [];

  beforeEach(async () => {
    [redis, origin] = await Promise.all([
      startRedisServer(),
      startFragileOrigin({ cacheControl: "max-age=60", latencyMs: 30 }),
    ]);
  });

  afterEach(async () => {
    for (const child of children.splice(0))
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await Promise.all([redis.stop(), origin.close()]);
  });

  const launch = async () => {
    const member = await launchCli(["--origin", origin.url, "--redis", redis.url]);
    children.push(member.child);
    return member;
  };

  // Three CLI processes from source, each loading its modules under tsx twice (the main thread
  // and the worker that serves): on a loaded machine this passed 30 s.
  it(
    "150 concurrent requests over three processes for a cold key make exactly 1 origin request; SIGTERM exits 0",
    { timeout: 120_000 },
    async () => {
      const members = await Promise.all([launch(), launch(), launch()]);
      expect(members.map((m) => m.mode)).toEqual(["redis", "redis", "redis"]);
      const answers = await spread(
        members.map((m) => m.url),
        150,
        "/cold",
      );
      expectOneBody(answers);
      expect(origin.stats().requests).toBe(1);
      // The agent still holds idle keep-alive connections to each process: shutdown must not wait on them.
      const exits = members.map(
        ({ child }) => new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code))),
      );
      for (const { child } of members) child.kill("SIGTERM");
      expect(await Promise.all(exits)).toEqual([0, 0, 0]);
    },
  );
});
