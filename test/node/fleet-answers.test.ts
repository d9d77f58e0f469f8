import { createServer, request, Agent, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { Redis } from "ioredis";
import { RedisConnection } from "../../src/node/redis/connection.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";
import { raw } from "./attack-kit.ts";
import { deploy } from "./deployment.ts";

/** Every member is reached under one site name, as behind a load balancer: one cache key per URL. */
const HOST = "site.test";
const PREFIX = "herdless:answers:";
const logger = jsonLogger("silent");
const agent = new Agent({ keepAlive: true, maxSockets: 100 });

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * An origin that holds its answers until the test releases them, so every concurrent request
 * is waiting on the one fetch when it answers. `/broken` is an application bug: 500 with a
 * body; `/expired` is stale as it arrives (`max-age=0`: each request's own); `/page` is fresh for a minute; `/account` is one client's page: `private` with a session cookie. Each answer is
 * numbered by the origin request it answers.
 */
async function heldOrigin() {
  let held: (() => void)[] | undefined = [];
  const byPath = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    const n = (byPath.get(path) ?? 0) + 1;
    byPath.set(path, n);
    req.resume();
    const answer = () => {
      if (path === "/page") {
        res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=60" }).end(`page #${n}`);
      } else if (path === "/expired") {
        res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=0" }).end(`expired page #${n}`);
      } else if (path === "/broken") {
        res.writeHead(500, { "content-type": "text/plain", "x-app": "broken" }).end(`application bug #${n}`);
      } else {
        res
          .writeHead(200, { "content-type": "text/plain", "cache-control": "private", "set-cookie": `session=${n}` })
          .end(`account page of session ${n}`);
      }
    };
    if (held) held.push(answer);
    else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: (path: string) => byPath.get(path) ?? 0,
    /** Answers what is held and everything after at once. */
    release() {
      const answers = held ?? [];
      held = undefined;
      for (const answer of answers) answer();
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function get(base: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { agent, headers: { host: HOST } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** Polls a condition the fleet makes true; bounded, never a fixed sleep. */
async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("answers that are not stored, across three herdless stacks sharing one Redis", () => {
  let redis: RedisServer;
  let observer: RedisConnection;
  let origin: Awaited<ReturnType<typeof heldOrigin>>;
  let servers: RunningServer[];
  let urls: string[];
  let arrived: number;

  beforeEach(async () => {
    [redis, origin] = await Promise.all([startRedisServer(), heldOrigin()]);
    observer = new RedisConnection({ url: redis.url });
    await observer.ready();
    const config = parseConfig({ origin: { url: origin.url } });
    const stacks = await Promise.all(
      [0, 1, 2].map(() => redisStack({ config, logger, redisUrl: redis.url, prefix: PREFIX })),
    );
    servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0 })));
    urls = servers.map((s) => s.url);
    arrived = 0;
    for (const { server } of servers) server.on("request", () => arrived++);
  });

  afterEach(async () => {
    origin.release();
    await Promise.all(servers.map((s) => s.close()));
    await observer.close();
    await Promise.all([redis.stop(), origin.close()]);
  });

  /**
   * `n` concurrent requests for `path` dealt round-robin over the members, answered once every
   * one reached a member, the origin has the fleet's one fetch, and the two other members
   * wait on it.
   */
  async function herd(path: string, n: number, beforeRelease = async () => {}): Promise<Answer[]> {
    const answers = Promise.all(Array.from({ length: n }, (_, i) => get(urls[i % urls.length]!, path)));
    const channel = `${PREFIX}filled:GET http://${HOST}${path}`;
    await until(
      "every request reached the fleet, the one fetch the origin",
      () => arrived === n && origin.requests(path) === 1,
    );
    await until("the other two members wait on that fetch", async () => {
      const [, waiting] = (await observer.client.pubsub("NUMSUB", channel)) as [string, number];
      return waiting >= 2;
    });
    await beforeRelease();
    origin.release();
    return answers;
  }

  it("an origin 500 reaches every waiter of the one fetch in every process: its status, headers and body; it is not stored", async () => {
    const answers = await herd("/broken", 30);
    expect(origin.requests("/broken")).toBe(1);
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 500));
    expect(answers.filter((a) => a.body !== "application bug #1" || a.headers["x-app"] !== "broken")).toEqual([]);
    expect(answers.every((a) => String(a.headers["cache-status"]).includes("fwd-status=500"))).toBe(true);
    // RFC 9211 §2.6: all but the request that fetched waited on that fetch, here or in another process.
    expect(answers.filter((a) => !String(a.headers["cache-status"]).includes("; collapsed;"))).toHaveLength(1);
    // RFC 9111 §4.2.2: no explicit freshness, not stored: the next request asks the origin again.
    for (const url of urls) expect(await get(url, "/broken")).toMatchObject({ status: 500 });
    expect(origin.requests("/broken")).toBe(4);
  });

  it("a private answer with a session cookie goes to the client that asked for it only: each waiter asks on its own", async () => {
    const answers = await herd("/account", 30);
    // Every client got its own session, and the page made for that session, never another's.
    const sessions = answers.map((a) => String(a.headers["set-cookie"]));
    expect(new Set(sessions).size).toBe(30);
    for (const a of answers)
      expect(a.body).toBe(`account page of ${String(a.headers["set-cookie"]).replace("=", " ")}`);
    expect(origin.requests("/account")).toBe(30);
  });

  it("the members waiting on another's fetch are answered by its announcement, which carries the small entry it stored: no member reads the entry back from Redis once the origin answered", async () => {
    const entryKey = `${PREFIX}entry:GET http://${HOST}/page`;
    // Every command a member sent that names the entry (not those a script ran inside).
    const sent: string[] = [];
    const observing = new Redis(redis.url);
    let monitor: Redis | undefined;
    try {
      const answers = await herd("/page", 30, async () => {
        monitor = await observing.monitor();
        monitor.on("monitor", (_time: string, args: string[], source: string) => {
          if (!source.endsWith("lua") && args.includes(entryKey)) sent.push(String(args[0]).toLowerCase());
        });
      });
      expect(answers.filter((a) => a.status !== 200 || a.body !== "page #1")).toEqual([]);
      expect(origin.requests("/page")).toBe(1);
      // The holder's write (a script: EVAL the first time) and no read: each waiting member read it back after the announcement before.
      await until("the holder's write is seen", () => sent.includes("evalsha"));
      expect(sent.filter((command) => command !== "evalsha" && command !== "eval")).toEqual([]);
    } finally {
      monitor?.disconnect();
      observing.disconnect();
    }
  });

  it("RFC 9111 §4: an answer stored already stale (max-age=0) is the lease holder's alone: every waiter, in every process, asks the origin for itself, none waiting for another's turn", async () => {
    const answers = await herd("/expired", 30);
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(new Set(answers.map((a) => a.body)).size).toBe(30);
    expect(origin.requests("/expired")).toBe(30);
  });
});

describe("an origin answer that breaks off on a relayed request (fleet)", () => {
  // The head promises 50 bytes, then the origin goes away; in a fleet the relay's guard round
  // trip means the failure is known before herdless has written a byte.
  async function brokenOrigin(sent: string) {
    const server: Server = createServer((req) => {
      req.resume();
      req.on("end", () =>
        req.socket.end(
          `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 50\r\nconnection: close\r\n\r\n${sent}`,
        ),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const fleet = await deploy("fleet", `http://127.0.0.1:${(server.address() as AddressInfo).port}`, {}, 1);
    const post = () =>
      raw(
        fleet.urls[0]!,
        "POST /order HTTP/1.1\r\nhost: site.test\r\nconnection: close\r\ncontent-length: 2\r\n\r\nhi",
      );
    const close = async () => {
      await fleet.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    };
    return { post, close };
  }

  it("nothing of the body came: a 502 naming the fault, never a connection closed with no answer", async () => {
    const origin = await brokenOrigin("");
    try {
      const answer = await origin.post();
      expect([answer.status, answer.headers["cache-status"]]).toEqual([
        502,
        "herdless; fwd=method; fwd-status=200; detail=origin-error",
      ]);
      // The path, never the origin's address (test/node/security-disclosure.test.ts).
      expect(answer.body).toMatch(/^origin failed: origin body for \/order ended early/);
    } finally {
      await origin.close();
    }
  });

  it("part of the body came: the client gets the head and those bytes, short of the Content-Length, never an empty reply", async () => {
    const origin = await brokenOrigin("only twenty bytes...");
    try {
      const answer = await origin.post();
      expect([answer.status, answer.headers["content-length"], answer.body]).toEqual([
        200,
        "50",
        "only twenty bytes...",
      ]);
    } finally {
      await origin.close();
    }
  });
});
