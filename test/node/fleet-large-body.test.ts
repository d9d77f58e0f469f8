import type { ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { launchCli } from "./cli-process.ts";
import { BYTES, expectedHash, halfThenWait, read, type HalfThenWait, type Reading } from "./large-body-origin.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

const HOST = "site.test";
let redis: RedisServer | undefined;
let origin: HalfThenWait | undefined;
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  origin?.server.close();
  await redis?.stop();
});

/** `work`'s value, or "timed out" after `ms` (a client that never got a byte fails the test, not its timeout). */
function within<T>(ms: number, work: Promise<T>): Promise<T | "timed out"> {
  return Promise.race([
    work,
    new Promise<"timed out">((resolve) => setTimeout(() => resolve("timed out"), ms).unref()),
  ]);
}

/**
 * The origin's answers start once the key's other processes wait on it (`waiting` of them
 * subscribed to its fill channel): a body is relayed to the processes waiting when its head
 * comes, and a process that asks later waits for the flight's end (the third test). On a
 * loaded machine a process's requests sometimes came after the head.
 */
async function headsOnceWaiting(waiting: number): Promise<{ heads: Promise<void>; open: () => Promise<void> }> {
  let release!: () => void;
  const heads = new Promise<void>((resolve) => (release = resolve));
  const open = async () => {
    const client = new Redis(redis!.url, { lazyConnect: true });
    try {
      await client.connect();
      for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
        const channels = (await client.call("PUBSUB", "CHANNELS", "*filled:*")) as string[];
        const counts =
          channels.length === 0 ? [] : ((await client.call("PUBSUB", "NUMSUB", ...channels)) as (string | number)[]);
        const subscribed = counts.filter((_, i) => i % 2 === 1).reduce<number>((sum, n) => sum + Number(n), 0);
        if (subscribed >= waiting) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      client.disconnect();
      release();
    }
  };
  return { heads, open };
}

/** What the answers other than 200 said (seen under a loaded CI once, as 503s with no detail kept). */
const refusals = (readings: readonly Reading[]): string =>
  readings
    .map((r) => r.refusal())
    .filter((line) => line !== undefined)
    .join("\n");

describe("a large body herd on three herdless processes sharing Redis", () => {
  it(
    "50 concurrent cold requests for a 20 MB body: 1 origin request for the fleet, 50 identical complete bodies; every process's clients have bytes before the origin finished",
    { timeout: 120_000 },
    async () => {
      redis = await startRedisServer();
      const { heads, open } = await headsOnceWaiting(2);
      origin = await halfThenWait(heads);
      const config = join(mkdtempSync(join(tmpdir(), "herdless-large-")), "config.json");
      writeFileSync(config, JSON.stringify({ origin: { url: origin.url } }));
      const members = await Promise.all([0, 1, 2].map(() => launchCli(["--config", config, "--redis", redis!.url])));
      children.push(...members.map((m) => m.child));
      expect(members.map((m) => m.mode)).toEqual(["redis", "redis", "redis"]);
      const member = (i: number) => i % members.length;
      const readings = Array.from({ length: 50 }, (_, i) => read(`${members[member(i)]!.url}/big`, HOST));
      await open();

      // The process holding the key's lease streams the body to its clients as it arrives, and
      // relays it through Redis to the other processes, whose clients stream it too: every
      // client has bytes while the origin still holds back the second half.
      const leader = await Promise.race(readings.map((r, i) => r.firstBytes.then(() => member(i))));
      const others = readings.filter((_, i) => member(i) !== leader);
      const started = await within(60_000, Promise.all(others.map((r) => r.firstBytes)));
      expect(started, refusals(others)).toEqual(others.map(() => 200));
      expect(origin.requests()).toBe(1);

      origin.finish();
      const bodies = await Promise.all(readings.map((r) => r.done));
      expect(bodies.filter((b) => b.bytes !== BYTES || b.hash !== expectedHash)).toEqual([]);
      expect(bodies.every((b) => b.cacheStatus.startsWith("herdless; fwd=uri-miss; fwd-status=200"))).toBe(true);
      expect(origin.requests()).toBe(1);
      // Stored for the fleet: every process answers the next request from the store.
      for (const { url } of members) {
        const after = await read(`${url}/big`, HOST).done;
        expect(after).toMatchObject({ hash: expectedHash, bytes: BYTES });
        expect(after.cacheStatus).toContain("hit");
      }
      expect(origin.requests()).toBe(1);
    },
  );

  it(
    "a body above cache.maxEntryBytes: 12 concurrent requests over three processes, 1 origin request, every client streams it before the origin finished, and it is not kept",
    { timeout: 120_000 },
    async () => {
      redis = await startRedisServer();
      const { heads, open } = await headsOnceWaiting(2);
      origin = await halfThenWait(heads);
      const config = join(mkdtempSync(join(tmpdir(), "herdless-large-")), "config.json");
      writeFileSync(config, JSON.stringify({ origin: { url: origin.url }, cache: { maxEntryBytes: 4 * 1024 * 1024 } }));
      const members = await Promise.all([0, 1, 2].map(() => launchCli(["--config", config, "--redis", redis!.url])));
      children.push(...members.map((m) => m.child));
      const readings = Array.from({ length: 12 }, (_, i) => read(`${members[i % 3]!.url}/big`, HOST));
      await open();

      const started = await within(60_000, Promise.all(readings.map((r) => r.firstBytes)));
      expect(started, refusals(readings)).toEqual(readings.map(() => 200));
      expect(origin.requests()).toBe(1);
      origin.finish();
      const bodies = await Promise.all(readings.map((r) => r.done));
      expect(bodies.filter((b) => b.bytes !== BYTES || b.hash !== expectedHash)).toEqual([]);
      expect(bodies.every((b) => b.cacheStatus.includes("detail=too-large"))).toBe(true);
      expect(origin.requests()).toBe(1);
      // Not kept: the next request is the origin's again.
      const after = await read(`${members[1]!.url}/big`, HOST).done;
      expect(after).toMatchObject({ hash: expectedHash, bytes: BYTES });
      expect(origin.requests()).toBe(2);
    },
  );

  it(
    "a member asked for a body another member streams to its clients alone (asked after its head): it waits for that download's end, past coordinator.waitTimeoutMs, then asks the origin itself; never a 503, never two at once",
    { timeout: 120_000 },
    async () => {
      redis = await startRedisServer();
      origin = await halfThenWait();
      const config = join(mkdtempSync(join(tmpdir(), "herdless-large-")), "config.json");
      const settings = {
        // The wait must outlive an origin request (config.ts): its head comes at once, its body is streamed.
        origin: { url: origin.url, timeoutMs: 1_500 },
        cache: { maxEntryBytes: 4 * 1024 * 1024 },
        coordinator: { waitTimeoutMs: 2_000 },
      };
      writeFileSync(config, JSON.stringify(settings));
      const members = await Promise.all([0, 1].map(() => launchCli(["--config", config, "--redis", redis!.url])));
      children.push(...members.map((m) => m.child));
      // Nobody waits on the key elsewhere when its head comes: its body is copied for nobody.
      const first = read(`${members[0]!.url}/big`, HOST);
      expect(await first.firstBytes).toBe(200);
      const late = read(`${members[1]!.url}/big`, HOST);
      // Twice coordinator.waitTimeoutMs: before, the late member gave up on the lease here with a 503.
      expect(await within(4_000, late.firstBytes)).toBe("timed out");
      expect(late.refusal()).toBeUndefined();
      expect(origin.requests()).toBe(1);
      origin.finish();
      expect(await first.done).toMatchObject({ hash: expectedHash, bytes: BYTES });
      expect(await late.firstBytes).toBe(200);
      expect(await late.done).toMatchObject({ hash: expectedHash, bytes: BYTES });
      expect(origin.requests()).toBe(2);
    },
  );
});
