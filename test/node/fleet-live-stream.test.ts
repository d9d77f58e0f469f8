/**
 * A server-sent event stream on a cached route, in a Redis fleet: a live feed is each
 * client's as long as its page is open, so a member asked for it while another member's
 * stream of the same URL runs must not wait for that stream's end.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { eventStreamOrigin, readUntil } from "./attack-kit.ts";
import { launchCli } from "./cli-process.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

const cleanup: (() => Promise<void>)[] = [];
const children: ChildProcess[] = [];
let redis: RedisServer | undefined;

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
  for (const close of cleanup.splice(0)) await close();
  await redis?.stop();
});

describe("a live event stream in a fleet", () => {
  it(
    "a member asked for /events while another member streams it gets a stream of its own at once, not a wait for the other's end",
    { timeout: 60_000 },
    async () => {
      redis = await startRedisServer();
      const { url: origin, open } = await eventStreamOrigin(cleanup);
      const config = join(mkdtempSync(join(tmpdir(), "herdless-live-")), "config.json");
      writeFileSync(config, JSON.stringify({ origin: { url: origin } }));
      const members = await Promise.all([0, 1].map(() => launchCli(["--config", config, "--redis", redis!.url])));
      children.push(...members.map((m) => m.child));

      const first = await readUntil(members[0]!.url, "/events", "data: 0", 10_000);
      expect(first).toMatch(/^HTTP\/1\.1 200 [^]*data: 0\n\n/);
      // The first stream is still open: the second member's visitor must not wait for its end.
      const second = await readUntil(members[1]!.url, "/events", "data: ", 5_000);
      expect(second).toMatch(/^HTTP\/1\.1 200 [^]*content-type: text\/event-stream[^]*data: 1\n\n/);
      expect(open).toHaveLength(2);
      expect(open.every((res) => !res.writableEnded)).toBe(true);
    },
  );
});
