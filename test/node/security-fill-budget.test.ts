import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";
import { parsePrometheusText } from "../prometheus-text.ts";

/*
 * An attacker asks for several large cacheable pages at once. Each fill keeps its body whole
 * until complete, to store it; before the fill budget, `origin.maxConcurrency` of them held
 * that many times `cache.maxEntryBytes` outside every memory bound (8 × 24 MiB pages: 507–767
 * MiB resident against a bound of 196 MiB). Now the bodies kept together stay within
 * `cache.fillBudgetBytes`; a body past it is streamed whole to its clients and not stored.
 */

const MiB = 1024 * 1024;
const BUDGET = MiB;
const PAGE_BYTES = 400 * 1024;

/** The body of `/p/<n>`: bytes that vary with the page and the offset, so a misplaced or foreign chunk shows. */
function pageBody(path: string): Buffer {
  const seed = [...path].reduce((sum, c) => sum * 31 + c.charCodeAt(0), 7) & 0xff;
  const body = Buffer.alloc(PAGE_BYTES);
  for (let i = 0; i < PAGE_BYTES; i++) body[i] = (i * 131 + (i >>> 11) + seed) & 0xff;
  return body;
}

interface HeldOrigin {
  url: string;
  requests(path: string): number;
  /** Resolves once `n` answers sent their first half and wait. */
  waiting(n: number): Promise<void>;
  /** Sends the rest of every body held back, and of every later one at once. */
  release(): void;
  server: Server;
}

/** Pages sent half, then the rest once released; `chunked` ones without Content-Length. */
async function heldOrigin(): Promise<HeldOrigin> {
  const counts = new Map<string, number>();
  let held = 0;
  let onHeld = () => {};
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://origin.test").pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const body = pageBody(path);
    const length = path.startsWith("/chunked/") ? {} : { "content-length": String(body.length) };
    res.writeHead(200, { ...length, "cache-control": "max-age=60", "content-type": "application/octet-stream" });
    res.write(body.subarray(0, body.length / 2), () => {
      held += 1;
      onHeld();
    });
    void released.then(() => res.end(body.subarray(body.length / 2)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: (path) => counts.get(path) ?? 0,
    waiting: (n) =>
      new Promise<void>((resolve) => {
        onHeld = () => held >= n && resolve();
        onHeld();
      }),
    release,
    server,
  };
}

let proxy: RunningServer | undefined;
let origin: HeldOrigin | undefined;
afterEach(async () => {
  origin?.release();
  await proxy?.close();
  origin?.server.close();
});

async function start(): Promise<string> {
  origin = await heldOrigin();
  const logger = jsonLogger("silent");
  const config = parseConfig({ origin: { url: origin.url }, cache: { fillBudgetBytes: BUDGET } });
  proxy = await startServer({ stack: localStack({ config, logger }), logger, port: 0 });
  return proxy.url;
}

interface Got {
  status: number;
  cacheStatus: string;
  whole: boolean;
}

async function get(url: string): Promise<{ head: Response; body: Promise<Got> }> {
  const head = await fetch(url);
  const path = new URL(url).pathname;
  const body = head.arrayBuffer().then((bytes) => ({
    status: head.status,
    cacheStatus: head.headers.get("cache-status") ?? "",
    whole: Buffer.from(bytes).equals(pageBody(path)),
  }));
  return { head, body };
}

async function fillGauges(base: string): Promise<{ bytes: number; peak: number; overBudget: number }> {
  const text = await (await fetch(`${base}/__herdless/metrics`)).text();
  const families = parsePrometheusText(text);
  const value = (name: string) => families.get(name)?.samples[0]?.value ?? Number.NaN;
  return {
    bytes: value("herdless_fill_bytes"),
    peak: value("herdless_fill_peak_bytes"),
    overBudget: value("herdless_fill_over_budget_total"),
  };
}

describe("bodies kept to be stored stay within cache.fillBudgetBytes", () => {
  it("an attacker's 6 concurrent 400 KB misses against a 1 MiB budget: every client gets its whole page, the kept bytes never pass the budget, the pages kept are hits and the others are fetched whole again", async () => {
    const base = await start();
    const paths = Array.from({ length: 6 }, (_, i) => `/p/${i}`);
    const asked = await Promise.all(paths.map((p) => get(`${base}${p}`)));
    await origin!.waiting(paths.length);
    origin!.release();
    const got = await Promise.all(asked.map((a) => a.body));
    // Every client, stored or not, has its own page whole.
    expect(got.map((g) => [g.status, g.whole])).toEqual(paths.map(() => [200, true]));
    const overBudget = paths.filter((_, i) => got[i]!.cacheStatus.includes("detail=fill-budget"));
    const kept = paths.filter((p) => !overBudget.includes(p));
    // 1 MiB holds two 400 KB bodies at most (three would be 1.2 MB): the rest streamed unstored, and said so.
    expect(kept.length).toBeGreaterThanOrEqual(1);
    expect(kept.length).toBeLessThanOrEqual(2);
    const gauges = await fillGauges(base);
    expect(gauges.peak).toBeGreaterThan(0);
    expect(gauges.peak).toBeLessThanOrEqual(BUDGET);
    expect(gauges.bytes).toBe(0);
    expect(gauges.overBudget).toBeGreaterThanOrEqual(overBudget.length);
    // The pages that fitted were stored: hits, no origin request.
    for (const p of kept) {
      const again = await (await get(`${base}${p}`)).body;
      expect(again).toMatchObject({ status: 200, whole: true });
      expect(again.cacheStatus).toContain("hit");
      expect(origin!.requests(p)).toBe(1);
    }
    // The others were never stored (nothing truncated, nothing foreign): fetched again, whole, and kept now.
    for (const p of overBudget) {
      const again = await (await get(`${base}${p}`)).body;
      expect(again).toMatchObject({ status: 200, whole: true });
      expect(again.cacheStatus).not.toContain("hit");
      expect(origin!.requests(p)).toBe(2);
      const third = await (await get(`${base}${p}`)).body;
      expect(third).toMatchObject({ status: 200, whole: true });
      expect(third.cacheStatus).toContain("hit");
    }
  });

  it("bodies of unknown length (chunked) past the budget half-way are dropped, never stored cut short: the next request gets the whole page", async () => {
    const base = await start();
    const paths = Array.from({ length: 4 }, (_, i) => `/chunked/${i}`);
    const asked = await Promise.all(paths.map((p) => get(`${base}${p}`)));
    await origin!.waiting(paths.length);
    origin!.release();
    const got = await Promise.all(asked.map((a) => a.body));
    expect(got.map((g) => [g.status, g.whole])).toEqual(paths.map(() => [200, true]));
    const gauges = await fillGauges(base);
    expect(gauges.peak).toBeLessThanOrEqual(BUDGET);
    expect(gauges.bytes).toBe(0);
    // 4 × 400 KB do not fit 1 MiB together: some were dropped part-way, and none of those is stored.
    expect(gauges.overBudget).toBeGreaterThanOrEqual(1);
    let hits = 0;
    for (const p of paths) {
      const again = await (await get(`${base}${p}`)).body;
      expect(again).toMatchObject({ status: 200, whole: true });
      if (again.cacheStatus.includes("hit")) {
        hits += 1;
        expect(origin!.requests(p)).toBe(1);
      } else expect(origin!.requests(p)).toBe(2);
    }
    expect(hits).toBeGreaterThanOrEqual(1);
    expect(hits).toBeLessThan(paths.length);
  });
});
