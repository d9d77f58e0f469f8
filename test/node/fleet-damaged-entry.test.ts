import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import type { Entry } from "../../src/core/http/entry.ts";
import { testEntry } from "../../src/core/store/store-conformance.ts";
import { Redis } from "ioredis";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";
import { send } from "./deployment.ts";

const logger = jsonLogger("silent");
const PREFIX = "herdless:damaged:";
let redis: RedisServer;
let origin: Server;
let member: RunningServer;
let client: Redis;
const asked = new Map<string, number>();

beforeAll(async () => {
  redis = await startRedisServer();
  origin = createServer((req, res) => {
    asked.set(req.url ?? "", (asked.get(req.url ?? "") ?? 0) + 1);
    req.resume();
    res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain" }).end(`page ${req.url}`);
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const config = parseConfig({
    origin: { url: `http://127.0.0.1:${(origin.address() as AddressInfo).port}` },
  });
  const stack = await redisStack({ config, logger, redisUrl: redis.url, prefix: PREFIX });
  member = await startServer({ stack, logger, port: 0 });
  client = new Redis(redis.url);
});

afterAll(async () => {
  client.disconnect();
  await member.close();
  await redis.stop();
  await new Promise((resolve) => origin.close(resolve));
});

/**
 * An entry for `path` as a member of another build (or a damaged write, or a hand edit) left
 * it in Redis: the current format version, one field not what this herdless reads.
 */
async function plant(path: string, damage: (meta: Omit<Entry, "body">) => object): Promise<void> {
  const key = `GET http://site.test${path}`;
  const now = Date.now();
  const entry = testEntry(key, now, { url: `http://site.test${path}`, staleAt: now + 60_000, deleteAt: now + 60_000 });
  const { body, ...meta } = entry;
  const json = new TextEncoder().encode(JSON.stringify(damage({ ...meta })));
  const bytes = new Uint8Array(4 + json.length + body.length);
  new DataView(bytes.buffer).setUint32(0, json.length);
  bytes.set(json, 4);
  bytes.set(body, 4 + json.length);
  await client.hset(`${PREFIX}entry:${key}`, "t", "1", "d", String(entry.deleteAt), "b", Buffer.from(bytes));
}

describe("a member that finds a damaged entry in Redis (fleet)", () => {
  const cases: [string, (meta: Omit<Entry, "body">) => object][] = [
    ["headers that are not a list", (meta) => ({ ...meta, headers: "content-type: text/plain" })],
    ["a status that is not a final one", (meta) => ({ ...meta, status: 99 })],
    ["a header value that is not a string", (meta) => ({ ...meta, headers: [["content-type", 7]] })],
  ];
  for (const [what, damage] of cases) {
    it(`holding ${what} answers a clean miss, never a 500 for every visitor until it expires`, async () => {
      const path = `/${what.replace(/\W+/g, "-")}`;
      await plant(path, damage);
      const first = await send(member.url, path);
      expect([first.status, first.body]).toEqual([200, `page ${path}`]);
      expect(first.cacheStatus).toMatch(/fwd=uri-miss/);
      // The next visitor gets the page the first one's fill stored.
      const next = await send(member.url, path);
      expect([next.status, next.body]).toEqual([200, `page ${path}`]);
      expect(next.cacheStatus).toMatch(/^herdless; hit;/);
      expect(asked.get(path)).toBe(1);
    });
  }

  it("an undamaged entry planted the same way is served (the planting is right)", async () => {
    await plant("/whole", (meta) => meta);
    const answer = await send(member.url, "/whole");
    expect([answer.status, answer.body]).toEqual([200, "body of GET http://site.test/whole"]);
    expect(asked.get("/whole")).toBeUndefined();
  });

  it("naming another page's key is a miss: the entry filed under /mine is never served as /mine", async () => {
    await plant("/mine", (meta) => ({ ...meta, key: "GET http://site.test/other", url: "http://site.test/other" }));
    const answer = await send(member.url, "/mine");
    expect([answer.status, answer.body]).toEqual([200, "page /mine"]);
    expect(asked.get("/mine")).toBe(1);
  });
});
