import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { LATENCY_BUCKETS_SECONDS } from "../../src/core/admin/latency.ts";
import { SERVE_KINDS } from "../../src/core/admin/metrics.ts";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";
import { parsePrometheusText, sampleValue } from "../prometheus-text.ts";

const running: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
});

/** An origin that takes `originMs` of the latency timer's time per request (the timer is the test's). */
async function slowOrigin(timer: ManualClock, originMs: number): Promise<string> {
  const server: Server = createServer((req, res) => {
    timer.advance(originMs);
    res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain" });
    res.end(`page ${req.url}`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  running.push({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function proxy(originUrl: string, timer: ManualClock, fastHits = true): Promise<RunningServer> {
  const logger = jsonLogger("silent");
  const config = parseConfig({ origin: { url: originUrl } });
  const stack = localStack({ config, logger, clock: new ManualClock(Date.now()), latencyTimer: timer });
  const server = await startServer({ stack, logger, port: 0, fastHits });
  running.push(server);
  return server;
}

describe("Node latency histograms", () => {
  for (const fastHits of [true, false]) {
    it(`time each answer by result, in seconds, in the Prometheus output (hits ${fastHits ? "on the fast path" : "through the engine"})`, async () => {
      const timer = new ManualClock(0);
      const server = await proxy(await slowOrigin(timer, 120), timer, fastHits);
      expect((await fetch(`${server.url}/a`)).headers.get("cache-status")).toMatch(/fwd=uri-miss/);
      for (let i = 0; i < 3; i++)
        expect((await fetch(`${server.url}/a`)).headers.get("cache-status")).toMatch(/^herdless; hit/);
      const scrape = await fetch(`${server.url}/__herdless/metrics`);
      expect(scrape.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      // Strict: names, labels, values, one TYPE per family, cumulative buckets ending in +Inf = _count.
      const families = parsePrometheusText(await scrape.text());
      const histogram = families.get("herdless_request_duration_seconds");
      expect(histogram?.type).toBe("histogram");
      const bucket = (result: string, le: string) =>
        sampleValue(families, "herdless_request_duration_seconds_bucket", { result, le });
      // The miss waited on the origin's 120 ms: in (0.1, 0.25].
      expect(bucket("miss", "0.1")).toBe(0);
      expect(bucket("miss", "0.25")).toBe(1);
      expect(sampleValue(families, "herdless_request_duration_seconds_sum", { result: "miss" })).toBeCloseTo(0.12);
      // The hits took no time on the test's timer: all in the first bucket.
      expect(bucket("hit", String(LATENCY_BUCKETS_SECONDS[0]))).toBe(3);
      expect(bucket("hit", "+Inf")).toBe(3);
      expect(sampleValue(families, "herdless_request_duration_seconds_count", { result: "hit" })).toBe(
        sampleValue(families, "herdless_requests_total", { result: "hit" }),
      );
      // Every result class has its series (zeros until one is seen), with every bucket.
      for (const result of SERVE_KINDS) {
        expect(sampleValue(families, "herdless_request_duration_seconds_count", { result })).toBe(
          sampleValue(families, "herdless_requests_total", { result }),
        );
        expect(histogram?.samples.filter((s) => s.labels.result === result)).toHaveLength(
          LATENCY_BUCKETS_SECONDS.length + 3,
        );
      }
    });
  }

  it("collapsed waiters are timed as collapsed, from their own arrival", async () => {
    const timer = new ManualClock(0);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let arrived: () => void = () => undefined;
    const reached = new Promise<void>((resolve) => (arrived = resolve));
    const origin = createServer((_req, res) => {
      arrived();
      void gate.then(() => {
        timer.advance(40);
        res.writeHead(200, { "cache-control": "max-age=60" });
        res.end("one fetch");
      });
    });
    await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
    running.push({ close: () => new Promise<void>((resolve) => origin.close(() => resolve())) });
    const server = await proxy(`http://127.0.0.1:${(origin.address() as AddressInfo).port}`, timer);
    const first = fetch(`${server.url}/c`);
    await reached;
    timer.advance(1_000);
    // The second request arrives 1 s (timer) into the fetch and joins it.
    const second = fetch(`${server.url}/c`);
    expect(await waitForCollapsedWaiter(server)).toBe(true);
    release();
    const statuses = await Promise.all([first, second].map(async (r) => (await r).headers.get("cache-status") ?? ""));
    expect(statuses.filter((s) => s.includes("collapsed"))).toHaveLength(1);
    const families = parsePrometheusText(await (await fetch(`${server.url}/__herdless/metrics`)).text());
    // The miss: 1.04 s; the collapsed waiter: 0.04 s, from its own arrival.
    expect(sampleValue(families, "herdless_request_duration_seconds_sum", { result: "miss" })).toBeCloseTo(1.04);
    expect(sampleValue(families, "herdless_request_duration_seconds_sum", { result: "collapsed" })).toBeCloseTo(0.04);
    expect(sampleValue(families, "herdless_request_duration_seconds_bucket", { result: "collapsed", le: "0.05" })).toBe(
      1,
    );
  });
});

/** Waits (boundedly, on I/O turns) until the server holds two open requests: the second is waiting on the first's fetch. */
async function waitForCollapsedWaiter(server: RunningServer): Promise<boolean> {
  for (let i = 0; i < 1_000; i++) {
    const open = await new Promise<number>((resolve) => server.server.getConnections((_e, n) => resolve(n)));
    if (open >= 2) {
      // The connection is open; give the request a few I/O turns to reach the coordinator.
      for (let j = 0; j < 20; j++) await new Promise((resolve) => setImmediate(resolve));
      return true;
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
  return false;
}
