import {
  createExecutionContext,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { ManualClock, systemClock } from "../../src/core/clock.ts";
import type { FillRequest } from "../../src/core/fill/coordinator.ts";
import { DurableObjectStore } from "../../src/cloudflare/do-store.ts";
import worker from "../../src/cloudflare/worker.ts";
import { coordinatorOf, dataCenter, EDGE, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

async function viaWorker(request: Parameters<typeof worker.fetch>[0], workerEnv: typeof env): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(request, workerEnv, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

describe("the Worker entry", () => {
  it("answers 500 naming the field when the config is invalid, on every request, until it is fixed", async () => {
    const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const origin = await testOrigin();
    const bad = { ...env, ORIGIN_URL: origin.url, HERDLESS_CONFIG: JSON.stringify({ origin: { maxConcurency: 4 } }) };
    for (let i = 0; i < 2; i++) {
      const res = await viaWorker(new Request(`${EDGE}/x`), bad);
      expect(res.status).toBe(500);
      expect(await res.text()).toMatch(/origin\.maxConcurency: unknown option \(did you mean "maxConcurrency"\?\)/);
    }
    // Parsed once per isolate: the second request did not log again.
    expect(error).toHaveBeenCalledTimes(1);
    const notJson = await viaWorker(new Request(`${EDGE}/x`), { ...bad, HERDLESS_CONFIG: "{oops" });
    expect(await notJson.text()).toMatch(/HERDLESS_CONFIG must be a JSON object/);
    const fixed = await viaWorker(new Request(`${EDGE}/x`), { ...bad, HERDLESS_CONFIG: "" });
    expect(fixed.status).toBe(200);
    expect(await origin.count()).toBe(1);
    error.mockRestore();
  });

  it("serves through the cache: MISS, then HIT with Age and the origin's headers, HEAD from the GET entry", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60", "x-origin": "yes" } });
    const testEnv = edgeEnv(origin.url);
    const miss = await viaWorker(new Request(`${EDGE}/w?b=2&a=1`), testEnv);
    expect(miss.headers.get("cache-status")).toMatch(/^herdless; fwd=uri-miss; fwd-status=200; ttl=(59|60); stored$/);
    // The origin is asked for the key's query (sorted), so both spellings are one page.
    expect(await miss.text()).toBe("/w?a=1&b=2 #1");
    const hit = await viaWorker(new Request(`${EDGE}/w?a=1&b=2`), testEnv);
    expect(hit.headers.get("cache-status")).toMatch(/^herdless; hit; ttl=(59|60)$/);
    expect(hit.headers.get("x-origin")).toBe("yes");
    expect(hit.headers.get("age")).toBe("0");
    expect(await hit.text()).toBe("/w?a=1&b=2 #1");
    const head = await viaWorker(new Request(`${EDGE}/w?a=1&b=2`, { method: "HEAD" }), testEnv);
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect(await origin.count()).toBe(1);
  });

  it("relays a 304 without a body", async () => {
    const origin = await testOrigin({ etag: '"v1"' });
    const res = await viaWorker(
      new Request(`${EDGE}/etag`, { method: "POST", headers: { "if-none-match": '"v1"' } }),
      edgeEnv(origin.url),
    );
    expect(res.status).toBe(304);
    expect(res.body).toBeNull();
  });
});

describe("bodies above cache.maxEntryBytes are shared through the coordinator's RPC, not stored", () => {
  const BIG = "x".repeat(5_000);
  const config = { cache: { maxEntryBytes: 1_000 } };

  it("the edge streams the body to the client and stores nothing", async () => {
    const origin = await testOrigin({ body: BIG });
    const testEnv = edgeEnv(origin.url, config);
    await useInCoordinators(testEnv, ["/big"], systemClock);
    const dc = dataCenter(`big-${crypto.randomUUID()}`, testEnv);
    const first = await dc.get("/big");
    expect(first).toMatchObject({ status: 200, body: BIG });
    expect(first.cacheStatus).toMatch(/^herdless; fwd=uri-miss; fwd-status=200; .*detail=too-large$/);
    expect((await dc.get("/big")).body).toBe(BIG);
    expect(await origin.count()).toBe(2);
  });

  it("the leader and a caller that joined its flight each get the one fetch's body as a stream over RPC", async () => {
    const origin = await testOrigin({ body: BIG, mode: "hold" });
    const testEnv = edgeEnv(origin.url, config);
    await useInCoordinators(testEnv, ["/joined"], systemClock);
    const stub = coordinatorOf(testEnv, "/joined");
    const primary = `GET ${EDGE}/joined`;
    const request: FillRequest = {
      primary,
      key: primary,
      url: `${origin.url}/joined`,
      path: "/joined",
      headers: [],
      priority: "foreground",
    };
    const leader = stub.fill(request);
    await origin.waitFor({ held: 1 });
    const joiner = stub.fill(request);
    // Calls on one stub arrive in order, but the test runner's own calls into the object may
    // overtake an RPC under load (1 CI run in ~10 let the joiner arrive after the fetch ended):
    // a few round trips, each after the object's pending work, before the origin answers.
    for (let i = 0; i < 5; i++) await runInDurableObject(stub, () => scheduler.wait(10));
    await origin.set({ mode: "up" });
    const [led, joined] = await Promise.all([leader, joiner]);
    if (led.kind !== "stream" || joined.kind !== "stream") throw new Error(`expected streams, got ${led.kind}`);
    expect([led.size, led.collapsed, joined.collapsed]).toEqual(["too-large", false, true]);
    expect(led.body).toBeInstanceOf(ReadableStream);
    const bodies = await Promise.all([new Response(led.body).text(), new Response(joined.body).text()]);
    expect(bodies).toEqual([BIG, BIG]);
    expect(await origin.count()).toBe(1);
  });
});

describe("upkeep", () => {
  it("the coordinator's alarm deletes entries past deleteAt and sleeps until the next one", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=1" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url, { cache: { retainStaleMs: 0 } });
    await useInCoordinators(testEnv, ["/short"], clock);
    expect((await dataCenter(`up-${crypto.randomUUID()}`, testEnv, clock).get("/short")).status).toBe(200);
    const stub = coordinatorOf(testEnv, "/short");
    const { scheduled, deleteAt } = await runInDurableObject(stub, async (_instance, state) => ({
      scheduled: await state.storage.getAlarm(),
      deleteAt: (await new DurableObjectStore(state.storage, clock).get("GET https://edge.test/short"))?.deleteAt,
    }));
    expect(scheduled).toBe(deleteAt);
    clock.set(deleteAt!);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const left = await runInDurableObject(stub, (_instance, state) =>
      new DurableObjectStore(state.storage, clock).nextDeleteAt(),
    );
    expect(left).toBeUndefined();
  });
});
