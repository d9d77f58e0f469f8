import type { ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { launchCli } from "./cli-process.ts";
import { BYTES, expectedHash, halfThenWait, read, type HalfThenWait } from "./large-body-origin.ts";
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

describe("a large body herd on three herdless processes sharing Redis", () => {
  it(
    "50 concurrent cold requests for a 20 MB body: 1 origin request for the fleet, 50 identical complete bodies; every process's clients have bytes before the origin finished",
    { timeout: 120_000 },
    async () => {
      redis = await startRedisServer();
      origin = await halfThenWait();
      const config = join(mkdtempSync(join(tmpdir(), "herdless-large-")), "config.json");
      writeFileSync(config, JSON.stringify({ origin: { url: origin.url } }));
      const members = await Promise.all([0, 1, 2].map(() => launchCli(["--config", config, "--redis", redis!.url])));
      children.push(...members.map((m) => m.child));
      expect(members.map((m) => m.mode)).toEqual(["redis", "redis", "redis"]);
      const member = (i: number) => i % members.length;
      const readings = Array.from({ length: 50 }, (_, i) => read(`${members[member(i)]!.url}/big`, HOST));

      // The process holding the key's lease streams the body to its clients as it arrives, and
      // relays it through Redis to the other processes, whose clients stream it too: every
      // client has bytes while the origin still holds back the second half.
      const leader = await Promise.race(readings.map((r, i) => r.firstBytes.then(() => member(i))));
      const others = readings.filter((_, i) => member(i) !== leader);
      const started = await within(60_000, Promise.all(others.map((r) => r.firstBytes)));
      expect(started).toEqual(others.map(() => 200));
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
});
