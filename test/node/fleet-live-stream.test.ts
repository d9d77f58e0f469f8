/**
 * A server-sent event stream on a cached route, in a Redis fleet: a live feed is each
 * client's as long as its page is open, so a member asked for it while another member's
 * stream of the same URL runs must not wait for that stream's end.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { servingOrigin } from "./attack-kit.ts";
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

/** What an EventSource at `base` + `target` received once it holds `until`, or all of it after `ms`. */
function listen(base: string, target: string, until: string, ms: number): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () =>
      socket.write(`GET ${target} HTTP/1.1\r\nhost: shop.test\r\naccept: text/event-stream\r\n\r\n`),
    );
    let text = "";
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(text);
    };
    const timer = setTimeout(done, ms);
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes(until)) done();
    });
    socket.on("error", reject);
    socket.on("close", done);
  });
}

describe("a live event stream in a fleet", () => {
  it(
    "a member asked for /events while another member streams it gets a stream of its own at once, not a wait for the other's end",
    { timeout: 60_000 },
    async () => {
      redis = await startRedisServer();
      const open: ServerResponse[] = [];
      const origin = await servingOrigin((_req, res) => {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        res.write(`data: ${open.length}\n\n`);
        // Open as long as its page is: the test ends it.
        open.push(res);
      }, cleanup);
      cleanup.unshift(async () => void open.forEach((res) => res.end()));
      const config = join(mkdtempSync(join(tmpdir(), "herdless-live-")), "config.json");
      writeFileSync(config, JSON.stringify({ origin: { url: origin } }));
      const members = await Promise.all([0, 1].map(() => launchCli(["--config", config, "--redis", redis!.url])));
      children.push(...members.map((m) => m.child));

      const first = await listen(members[0]!.url, "/events", "data: 0", 10_000);
      expect(first).toMatch(/^HTTP\/1\.1 200 [^]*data: 0\n\n/);
      // The first stream is still open: the second member's visitor must not wait for its end.
      const second = await listen(members[1]!.url, "/events", "data: ", 5_000);
      expect(second).toMatch(/^HTTP\/1\.1 200 [^]*content-type: text\/event-stream[^]*data: 1\n\n/);
      expect(open).toHaveLength(2);
      expect(open.every((res) => !res.writableEnded)).toBe(true);
    },
  );
});
