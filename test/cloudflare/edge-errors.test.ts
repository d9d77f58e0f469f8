import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import type { Env } from "../../src/cloudflare/env.ts";
import type { KeyCoordinatorObject } from "../../src/cloudflare/key-coordinator-object.ts";
import { dataCenter, dataCenters, edgeEnv, useInCoordinators, type Answer, type DataCenter } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const SIE_HEADERS = { "cache-control": "max-age=60, stale-if-error=600" };

/** A COORDINATOR namespace whose objects cannot be reached. */
function unreachable(testEnv: Env): Env {
  const namespace = {
    idFromName: (name: string) => testEnv.COORDINATOR.idFromName(name),
    get: () => ({ fill: () => Promise.reject(new Error("Durable Object unreachable (simulated)")) }),
  };
  return { ...testEnv, COORDINATOR: namespace as unknown as DurableObjectNamespace<KeyCoordinatorObject> };
}

/** Fills `path` in the first `n` data centers: one origin request, the rest from the coordinator. */
async function fill(dcs: DataCenter[], n: number, path: string): Promise<void> {
  for (const dc of dcs.slice(0, n)) expect((await dc.get(path)).status).toBe(200);
}

function expectServedStale(answers: Answer[], body: string): void {
  expect(answers.filter((a) => a.status !== 200)).toEqual([]);
  for (const answer of answers) {
    expect(answer.body).toBe(body);
    // stale-if-error, backoff once the key's call failed, breaker-open once the deployment's breaker opened.
    expect(answer.cacheStatus).toMatch(/^herdless; fwd=stale; .*detail=(stale-if-error|backoff|breaker-open)$/);
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("stale-if-error across data centers", () => {
  it("origin down, then answering 503: 0 errors for a cached key, also in a data center whose own cache lacks it", async () => {
    const origin = await testOrigin({ headers: SIE_HEADERS });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    await useInCoordinators(testEnv, ["/sie"], clock, `guard-${crypto.randomUUID()}`);
    const dcs = dataCenters(4, testEnv, clock);
    // Three data centers hold the page; the fourth never saw it, but its coordinator has it.
    await fill(dcs, 3, "/sie");
    expect(await origin.count()).toBe(1);

    clock.advance(61_000);
    await origin.set({ mode: "down" });
    expectServedStale(await Promise.all(dcs.map((dc) => dc.get("/sie"))), "/sie #1");
    await origin.set({ mode: "up", status: 503, body: "overloaded" });
    expectServedStale(await Promise.all(dcs.map((dc) => dc.get("/sie"))), "/sie #1");

    // Past the stale-if-error window the error shows (nothing stored may hide it).
    clock.advance(600_000);
    const late = await dcs[0]!.get("/sie");
    expect(late.status).toBeGreaterThanOrEqual(500);
  });

  it("an uncached key gets the error: there is nothing to hide it with; the failed call is logged", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const origin = await testOrigin({ mode: "down" });
    const testEnv = edgeEnv(origin.url);
    const [dc] = dataCenters(1, testEnv);
    const answer = await dc!.get("/never-cached");
    expect(answer.status).toBe(502);
    expect(answer.cacheStatus).toMatch(/^herdless; fwd=uri-miss; detail=origin-error$/);
    expect(answer.headers.get("age")).toBe("0");
    const logged = warn.mock.calls.map(([line]) => JSON.parse(String(line)) as Record<string, unknown>);
    expect(logged).toEqual([
      {
        level: "warn",
        msg: "origin call failed",
        key: "GET https://edge.test/never-cached",
        error: expect.any(String),
      },
    ]);
  });

  it("RFC 9111 §5.1: a relayed POST's answer, made for its request, carries no Age of herdless's; the origin's error is logged", async () => {
    const origin = await testOrigin({ status: 500, body: "broken" });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const error = await dc!.get("/broken");
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const post = await dc!.get("/form", { method: "POST", body: "a=1" });
    expect(warn.mock.calls.map(([line]) => JSON.parse(String(line)) as unknown)).toEqual([
      { level: "warn", msg: "origin answered an error", key: `POST ${origin.url}/form`, status: 500 },
    ]);
    expect(error.status).toBe(500);
    expect(error.cacheStatus).toMatch(/^herdless; fwd=uri-miss; fwd-status=500; /);
    expect([post.status, post.cacheStatus, post.headers.get("age")]).toEqual([
      500,
      "herdless; fwd=method; fwd-status=500",
      null,
    ]);
  });
});

describe("RFC 9211 §2.6 on the Worker: the waiters of a fetch that failed say `collapsed` too", () => {
  /**
   * 4 requests in one data center (its isolate's waiters) and 1 in each of 3 more (waiters
   * at the key's object) while one fetch is at the origin: their Cache-Status, sorted.
   */
  async function sevenOnOneFetch(dcs: DataCenter[], path: string): Promise<string[]> {
    const requests = [dcs[0]!, dcs[0]!, dcs[0]!, ...dcs].map((dc) => dc.get(path));
    return (await Promise.all(requests)).map((a) => `${a.status} ${a.cacheStatus}`).sort();
  }
  const six = (line: string) => Array.from({ length: 6 }, () => line);

  it("a 503 without freshness, a reset connection, a timeout, and a failed revalidation stale-if-error hides: one origin request each, 6 of 7 `collapsed`", async () => {
    // Each answer comes late enough that every request joined its fetch.
    const origin = await testOrigin({ delayMs: 500, headers: SIE_HEADERS });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url, { origin: { timeoutMs: 600 } });
    const paths = ["/503", "/reset", "/stalls", "/kept"];
    await useInCoordinators(testEnv, paths, clock, `guard-${crypto.randomUUID()}`);
    const dcs = dataCenters(4, testEnv, clock, { ownIsolate: true });
    await origin.set({
      paths: { "/503": { status: 503, headers: {} }, "/reset": { mode: "down" }, "/stalls": { delayMs: 1_500 } },
    });
    expect(await sevenOnOneFetch(dcs, "/503")).toEqual([
      ...six("503 herdless; fwd=uri-miss; fwd-status=503; collapsed; detail=origin-error"),
      "503 herdless; fwd=uri-miss; fwd-status=503; detail=origin-error",
    ]);
    expect(await sevenOnOneFetch(dcs, "/reset")).toEqual([
      ...six("502 herdless; fwd=uri-miss; collapsed; detail=origin-error"),
      "502 herdless; fwd=uri-miss; detail=origin-error",
    ]);
    expect(await sevenOnOneFetch(dcs, "/stalls")).toEqual([
      ...six("504 herdless; fwd=uri-miss; collapsed; detail=origin-error"),
      "504 herdless; fwd=uri-miss; detail=origin-error",
    ]);
    await fill(dcs, 4, "/kept");
    clock.advance(61_000);
    await origin.set({ mode: "down" });
    expect(await sevenOnOneFetch(dcs, "/kept")).toEqual([
      ...six("200 herdless; fwd=stale; ttl=-1; collapsed; detail=stale-if-error"),
      "200 herdless; fwd=stale; ttl=-1; detail=stale-if-error",
    ]);
    expect((await origin.stats()).requests.map((r) => r.path)).toEqual(["/503", "/reset", "/stalls", "/kept", "/kept"]);
  });
});

describe("coordinator unreachable: the edge degrades to its local single-flight and keeps serving", () => {
  it("serves cached keys stale when the origin fails too, fetches through the fallback when it is up, and logs the degradation", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const origin = await testOrigin({ headers: SIE_HEADERS });
    const clock = new ManualClock(Date.now());
    const healthy = edgeEnv(origin.url);
    await useInCoordinators(healthy, ["/degraded"], clock, `guard-${crypto.randomUUID()}`);
    const names = dataCenters(2, healthy, clock);
    await fill(names, 2, "/degraded");

    // The same data centers (same caches), their coordinator gone.
    const degraded = names.map((dc) => dataCenter(dc.name, unreachable(healthy), clock));
    clock.advance(61_000);
    await origin.set({ mode: "down" });
    expectServedStale(await Promise.all(degraded.map((dc) => dc.get("/degraded"))), "/degraded #1");

    await origin.set({ mode: "up" });
    const fresh = await degraded[0]!.get("/degraded");
    const count = await origin.count();
    expect(fresh).toMatchObject({ status: 200, body: `/degraded #${count}` });
    expect(fresh.cacheStatus).toMatch(/^herdless; fwd=stale; fwd-status=200; ttl=60; stored$/);
    // The fallback wrote the fresher entry to this data center's cache.
    expect((await degraded[0]!.get("/degraded")).cacheStatus).toMatch(/^herdless; hit; ttl=60$/);
    expect(await origin.count()).toBe(count);
    expect(warn.mock.calls.map(([line]) => String(line)).some((line) => line.includes("coordinator unavailable"))).toBe(
      true,
    );
  });
});
