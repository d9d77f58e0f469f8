import type { ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { encodeEntry, type Entry } from "../../src/core/http/entry.ts";
import { testEntry } from "../../src/core/store/store-conformance.ts";
import { Redis } from "ioredis";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";
import { send } from "./deployment.ts";
import { launchCli } from "./cli-process.ts";

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
const key = (path: string) => `GET http://site.test${path}`;

async function plant(path: string, damage: (meta: Omit<Entry, "body">) => object): Promise<void> {
  const now = Date.now();
  const entry = testEntry(key(path), now, {
    url: `http://site.test${path}`,
    staleAt: now + 60_000,
    deleteAt: now + 60_000,
  });
  const { body, ...meta } = entry;
  const json = new TextEncoder().encode(JSON.stringify(damage({ ...meta })));
  const bytes = new Uint8Array(4 + json.length + body.length);
  new DataView(bytes.buffer).setUint32(0, json.length);
  bytes.set(json, 4);
  bytes.set(body, 4 + json.length);
  await client.hset(`${PREFIX}entry:${key(path)}`, "t", "1", "d", String(entry.deleteAt), "b", Buffer.from(bytes));
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

  // Fields no entry holds (dropped on arrival or before storing): served, the entry's answer
  // replayed a cookie, framed its body two ways, kept the connection open, or threw (a 500).
  const unstored: [string, [string, string][]][] = [
    ["Set-Cookie spelled with capitals", [["Set-Cookie", "session=the-writers"]]],
    ["a Content-Length of its own", [["content-length", "3"]]],
    ["a Transfer-Encoding", [["transfer-encoding", "chunked"]]],
    ["a Connection", [["connection", "keep-alive"]]],
    ["a value with a line break", [["x-note", "a\r\nset-cookie: session=injected"]]],
    ["a value past Latin-1, which no origin's answer on Node has", [["x-note", "\u0100"]]],
  ];
  for (const [what, headers] of unstored) {
    it(`holding ${what} is a miss: the page the origin sends, nothing of the entry's fields`, async () => {
      const path = `/${what.replace(/\W+/g, "-")}`;
      await plant(path, (meta) => ({ ...meta, headers }));
      const first = await send(member.url, path);
      expect([first.status, first.body, first.cacheStatus]).toEqual([
        200,
        `page ${path}`,
        expect.stringMatching(/fwd=uri-miss/),
      ]);
      expect([first.headers["set-cookie"], first.headers["content-length"], first.headers["x-note"]]).toEqual([
        undefined,
        String(`page ${path}`.length),
        undefined,
      ]);
      expect(asked.get(path)).toBe(1);
    });
  }

  it("holding a status no entry has (a 304 to an unconditional GET) is a miss", async () => {
    await plant("/validated", (meta) => ({ ...meta, status: 304 }));
    const answer = await send(member.url, "/validated");
    expect([answer.status, answer.body]).toEqual([200, "page /validated"]);
    expect(asked.get("/validated")).toBe(1);
  });

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

describe("a member process that finds a damaged chunk list in Redis", () => {
  let child: ChildProcess | undefined;
  afterAll(() => void child?.kill("SIGKILL"));

  it(
    "a list naming 4,000,000,000 chunks is a miss; the process lives (it died out of memory building their names)",
    { timeout: 60_000 },
    async () => {
      const config = join(mkdtempSync(join(tmpdir(), "herdless-damaged-")), "config.json");
      const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
      writeFileSync(
        config,
        JSON.stringify({ origin: { url }, cache: { name: "damaged-cli", maxBytes: 8 * 1024 * 1024 } }),
      );
      const cli = await launchCli(["--config", config, "--redis", redis.url]);
      child = cli.child;
      // `c` is where a body above 1 MiB lives: "<id> <chunks> <bytes>", its meta in `m`.
      const deleteAt = Date.now() + 60_000;
      const entry = testEntry(key("/chunky"), Date.now(), {
        url: "http://site.test/chunky",
        staleAt: deleteAt,
        deleteAt,
      });
      const meta = Buffer.from(encodeEntry({ ...entry, body: new Uint8Array(0) }));
      const ref = "0123abcd-0123-4567-89ab-0123456789ab 4000000000 5";
      await client.hset(
        `herdless:damaged-cli:entry:${key("/chunky")}`,
        "t",
        "1",
        "d",
        String(deleteAt),
        "m",
        meta,
        "c",
        ref,
      );
      const first = await send(cli.url, "/chunky");
      expect([first.status, first.body]).toEqual([200, "page /chunky"]);
      expect(first.cacheStatus).toMatch(/fwd=uri-miss/);
      const next = await send(cli.url, "/chunky");
      expect([next.status, next.body, next.cacheStatus]).toEqual([
        200,
        "page /chunky",
        expect.stringMatching(/^herdless; hit/),
      ]);
      expect(child.exitCode).toBeNull();
      expect(asked.get("/chunky")).toBe(1);
    },
  );
});
