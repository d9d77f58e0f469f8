import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

let origin: FragileOrigin;
let proxy: RunningServer;
let clock: ManualClock;

beforeEach(async () => {
  origin = await startFragileOrigin({
    cacheControl: "max-age=10, stale-while-revalidate=30, stale-if-error=300",
    latencyMs: 20,
  });
  clock = new ManualClock(Date.now());
  const logger = jsonLogger("silent");
  const config = parseConfig({ origin: { url: origin.url } });
  proxy = await startServer({ stack: localStack({ config, logger, clock }), logger, port: 0 });
});

afterEach(async () => {
  await proxy.close();
  await origin.close();
});

async function get(path: string) {
  const res = await fetch(`${proxy.url}${path}`);
  return {
    status: res.status,
    cacheStatus: res.headers.get("cache-status") ?? "",
    age: res.headers.get("age"),
    body: await res.text(),
  };
}

/** Background work finishes on its own; wait for the count the test expects, boundedly. */
async function originCount(atLeast: number): Promise<number> {
  for (let i = 0; i < 200 && origin.stats().requests < atLeast; i++) await new Promise((r) => setTimeout(r, 10));
  return origin.stats().requests;
}

describe("end to end through the Node adapter", () => {
  it("MISS then HIT", async () => {
    const miss = await get("/page");
    expect(miss.cacheStatus).toMatch(/^herdless; fwd=uri-miss; fwd-status=200; ttl=\d+; stored$/);
    const hit = await get("/page");
    expect(hit.cacheStatus).toMatch(/^herdless; hit; ttl=\d+$/);
    expect(hit.body).toBe(miss.body);
    expect(origin.stats().requests).toBe(1);
  });

  it("after expiry serves STALE at once while exactly one revalidation (a 304) reaches the origin", async () => {
    const first = await get("/page");
    clock.advance(12_000);
    const stale = await get("/page");
    expect(stale.cacheStatus).toMatch(/^herdless; hit; ttl=-2; detail=stale-while-revalidate$/);
    expect(stale.body).toBe(first.body);
    // More requests while the revalidation may still run: each is answered from the cache, never waits.
    const more = await Promise.all(Array.from({ length: 50 }, () => get("/page")));
    for (const res of more) {
      expect(res.cacheStatus).toMatch(/^herdless; hit; ttl=/);
      expect(res.body).toBe(first.body);
    }
    expect(await originCount(2)).toBe(2);
    expect(origin.stats().byStatus["304"]).toBe(1);
    const after = await get("/page");
    expect(after.cacheStatus).toMatch(/^herdless; hit; ttl=(9|10)$/);
    expect(origin.stats().requests).toBe(2);
  });

  it("200 concurrent requests for a cold key produce exactly 1 origin request", async () => {
    const all = await Promise.all(Array.from({ length: 200 }, () => get("/cold")));
    expect(all.every((r) => r.status === 200 && r.body === all[0]!.body)).toBe(true);
    expect(origin.stats().requests).toBe(1);
    expect(all.filter((r) => r.cacheStatus.includes("collapsed")).length).toBeGreaterThan(0);
  });

  it("origin 503 inside the stale-if-error window yields the stale body, not an error", async () => {
    const good = await get("/page");
    origin.set({ status: 503 });
    clock.advance(60_000);
    const res = await get("/page");
    expect(res.status).toBe(200);
    expect(res.body).toBe(good.body);
    expect(res.cacheStatus).toContain("fwd=stale; fwd-status=503");
    expect(res.cacheStatus).toContain("detail=stale-if-error");
  });

  it("every answer carries Cache-Status, and Age where it is not the origin's answer to this request alone: stored, and herdless's own 502 and 503", async () => {
    const answers = [await get("/page"), await get("/page")];
    const post = await fetch(`${proxy.url}/form`, { method: "POST", body: "a=1" });
    answers.push({
      status: post.status,
      cacheStatus: post.headers.get("cache-status") ?? "",
      age: post.headers.get("age"),
      body: await post.text(),
    });
    answers.push(await get("/broken?status=500"));
    await origin.close();
    answers.push(await get("/gone"), await get("/gone"));
    expect(answers.map((a) => [a.status, a.cacheStatus.replace(/; ttl=\d+/, "")])).toEqual([
      [200, "herdless; fwd=uri-miss; fwd-status=200; stored"],
      [200, "herdless; hit"],
      [200, "herdless; fwd=method; fwd-status=200"],
      [500, "herdless; fwd=uri-miss; fwd-status=500; detail=origin-error"],
      [502, "herdless; fwd=uri-miss; detail=origin-error"],
      [503, "herdless; fwd=uri-miss; detail=backoff"],
    ]);
    // RFC 9111 §5.1: an Age says the origin did not make the answer for this request.
    expect(answers.map((answer) => answer.age === null)).toEqual([false, false, true, true, false, false]);
  });

  it("exposes Prometheus metrics", async () => {
    await get("/page");
    await get("/page");
    const text = await (await fetch(`${proxy.url}/__herdless/metrics`)).text();
    expect(text).toContain('herdless_origin_requests_total{outcome="200"} 1');
    expect(text).toContain("herdless_hits_total 1");
    // A scrape reads: HEAD is a GET without its body, any other method a 405 naming the two.
    const head = await fetch(`${proxy.url}/__herdless/metrics`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    for (const method of ["POST", "PUT", "DELETE"]) {
      const refused = await fetch(`${proxy.url}/__herdless/metrics`, { method, body: "x" });
      expect(refused.status, method).toBe(405);
      expect(refused.headers.get("allow")).toBe("GET, HEAD");
      expect(await refused.text()).not.toContain("herdless_hits_total");
    }
  });
});
