import { expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { UrlTargets } from "../../src/core/http/fresh-hit.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { localStack } from "../../src/node/stack.ts";
import { findGc, settle } from "./reachable-collections.ts";

/**
 * An attacker's flood of distinct long URLs (12 KB each, under Node's 16 KiB head; workerd
 * takes 128 KiB) against per-key bookkeeping that is bounded by count but kept each URL
 * whole: the top-key counters (10,000 keys) and the hit paths' URL memos (1,000 URLs, each
 * held three times) lie outside every cache budget. 2,700 requests for 15 KB URLs filled the
 * heap of a Node process sized from a 64 MiB cache, which then exited; a Worker isolate grew
 * past 1 GB under 3,000 requests for 120 KB URLs. Measured as heap retained after a full
 * collection: a short name sliced from a long key keeps the whole key alive in V8.
 */

const MB = 1_000_000;
const FLOOD = 2_000;
const longQuery = (i: number) => `${i}-${"q".repeat(12_000)}`;

async function heapAfterGc(gc: () => void): Promise<number> {
  await settle(gc);
  return process.memoryUsage().heapUsed;
}

it(`${FLOOD} requests for distinct 12 KB URLs (24 MB) leave at most a few MB in the engine`, async () => {
  const gc = findGc();
  if (!gc) throw new Error("this test needs a collector it can run (--expose-gc)");
  const clock = new ManualClock(1_700_000_000_000);
  const body = new Uint8Array(200).fill(0x78);
  const fetch = async () => new Response(body, { headers: { "cache-control": "public, max-age=3600" } });
  const config = parseConfig({ origin: { url: "http://origin.test" }, cache: { maxBytes: 256 * 1024 } });
  const stack = localStack({ config, logger: jsonLogger("silent"), clock, fetch });
  const before = await heapAfterGc(gc);
  for (let i = 0; i < FLOOD; i++) {
    const url = new URL(`http://cache.test/a?${longQuery(i)}`);
    const res = await stack.engine.handle({ method: "GET", url, headers: new Headers(), rawHeaders: [] });
    if (res.body instanceof ReadableStream) await res.body.cancel();
    expect(res.status).toBe(200);
    clock.advance(1);
  }
  // The store keeps its budget's worth (256 KiB); everything else a few MB at most.
  expect((await heapAfterGc(gc)) - before).toBeLessThan(6 * MB);
  // The top keys still name the busiest keys, by their first characters.
  expect(stack.metrics.topKeys(1)[0]!.key).toMatch(/^GET http:\/\/cache\.test\/a\?\d+-q+…$/);
});

it("the hit paths' URL memos keep short URLs and parse long ones each time", async () => {
  const gc = findGc();
  if (!gc) throw new Error("this test needs a collector it can run (--expose-gc)");
  const targets = new UrlTargets(parseConfig({ origin: { url: "http://origin.test" } }));
  const before = await heapAfterGc(gc);
  for (let i = 0; i < 1_000; i++) {
    const target = `/a?${longQuery(i)}`;
    const url = `http://cache.test${target}`;
    expect(targets.get(url, () => new URL(url)).url.search).toBe(`?${longQuery(i)}`);
    expect(targets.forHost("cache.test", target, () => new URL(url)).primary).toContain(longQuery(i));
  }
  // 1,000 URLs of 12 KB, each remembered three times by two memos, were ~70 MB.
  expect((await heapAfterGc(gc)) - before).toBeLessThan(4 * MB);
  // Short URLs are still remembered: the same target object comes back.
  const once = targets.forHost("cache.test", "/p", () => new URL("http://cache.test/p"));
  expect(targets.knownForHost("cache.test", "/p")).toBe(once);
});
