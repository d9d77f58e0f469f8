import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { load, type Deployment } from "../../bench/scale-model.ts";
import { ManualClock } from "../../src/core/clock.ts";
import type { Env } from "../../src/cloudflare/env.ts";
import type { OriginGuardObject } from "../../src/cloudflare/origin-guard-object.ts";
import type { PurgeRegistryObject } from "../../src/cloudflare/purge-registry-object.ts";
import {
  ADMIN_TOKEN,
  adminCall,
  dataCenter,
  edgeEnv,
  useGuardConfig,
  useInCoordinators,
  type DataCenter,
} from "./edge-harness.ts";
import { inObject } from "./in-object.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * The scale model (bench/scale-model.ts, docs/scale.md) against a simulated deployment in
 * workerd: 50 data centers (a named Cache API cache each) with 2 isolates each (their own
 * purge copy, memory tier and metrics), the three object classes shared by all.
 */
const DCS = 50;
const ISOLATES = 2;
const PROPAGATION_MS = 1_000;
const PERIODS = 6;
/** Reads land at period edges, so a data center may read once more than the model's mean. */
const TOLERANCE = 1.1;

/** The real PURGES namespace, with the registry object's snapshot() reads counted. */
function countedPurges(): { reads: () => number; namespace: Env["PURGES"] } {
  let reads = 0;
  const real = () => env.PURGES.get(env.PURGES.idFromName("global"));
  const stub = {
    snapshot: () => (reads++, real().snapshot()),
    purge: (command: Parameters<PurgeRegistryObject["purge"]>[0]) => real().purge(command),
  };
  const namespace = { idFromName: (name: string) => env.PURGES.idFromName(name), get: () => stub };
  return { reads: () => reads, namespace: namespace as unknown as Env["PURGES"] };
}

/** Every isolate of every data center: `dc<i>` caches, `dc<i>/iso<j>` isolates. */
function deployment(testEnv: Env, clock: ManualClock): DataCenter[][] {
  const run = crypto.randomUUID().slice(0, 8);
  return Array.from({ length: DCS }, (_, i) =>
    Array.from({ length: ISOLATES }, (_, j) => {
      const cache = `dc${i}-${run}`;
      const isolate = dataCenter(cache, testEnv, clock, { ownIsolate: true });
      // The same cache under another isolate name: a second isolate of that data center.
      return j === 0 ? isolate : dataCenter(cache, testEnv, clock, { isolate: `${cache}/iso${j}` });
    }),
  );
}

function shape(overrides: Partial<Deployment>): Deployment {
  return {
    name: "simulation",
    dataCenters: DCS,
    isolatesPerDataCenter: ISOLATES,
    requestsPerSecond: DCS * ISOLATES,
    keys: 1,
    hotKeys: 1,
    ttlSeconds: 600,
    purgesPerSecond: 0,
    purgePropagationMs: PROPAGATION_MS,
    newUrlsPerSecond: 0,
    originMaxConcurrency: 4,
    originLatencyMs: 50,
    ...overrides,
  };
}

describe("a deployment of 50 data centers × 2 isolates, against the scale model", () => {
  it("the purge registry is read once per data center per propagation bound (not once per isolate); purges reach every edge", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const purges = countedPurges();
    const clock = new ManualClock(Date.now());
    const testEnv: Env = {
      ...edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN, purgePropagationMs: PROPAGATION_MS } }),
      PURGES: purges.namespace,
    };
    const edges = deployment(testEnv, clock);

    // Warm every data center: one origin request for the whole deployment.
    for (const dc of edges) expect((await dc[0]!.get("/front")).status).toBe(200);
    expect(await origin.count()).toBe(1);

    const before = purges.reads();
    for (let period = 0; period < PERIODS; period++) {
      clock.advance(PROPAGATION_MS);
      // One request after another, each with its work behind the answer done (ctx.waitUntil:
      // the data center's copy of the list is written there), as requests spread over the
      // bound find it; two isolates of a data center asking within one put's time both read.
      for (const dc of edges)
        for (const isolate of dc) {
          const answer = await isolate.get("/front");
          expect(answer.cacheStatus).toMatch(/hit/);
          await answer.settled;
        }
    }
    const reads = purges.reads() - before;
    const predicted = load(shape({})).purgeRegistryObject * PERIODS * (PROPAGATION_MS / 1_000);
    const perIsolate = load(shape({}), "before").purgeRegistryObject * PERIODS;
    expect(predicted).toBe(DCS * PERIODS);
    expect(perIsolate).toBe(DCS * ISOLATES * PERIODS);
    expect(reads).toBeGreaterThanOrEqual(predicted);
    expect(reads).toBeLessThanOrEqual(predicted * TOLERANCE);

    // A purge storm from several data centers: every edge honours each purge once it returns.
    const storm = Array.from({ length: 10 }, (_, i) =>
      adminCall(edges[i * 5]![0]!, "POST", "purge", { body: { urls: [`https://edge.test/front`] } }),
    );
    for (const answer of await Promise.all(storm)) expect(answer.status).toBe(200);
    clock.advance(PROPAGATION_MS);
    // The new copy everywhere: fetched by the first data center, from the key's object for the others.
    for (const dc of edges) expect((await dc[1]!.get("/front")).body).toBe("/front #2");
    // One origin request refilled the page for all 50 data centers.
    expect(await origin.count()).toBe(2);
  });

  it("a key explosion across the deployment: one origin request per new URL, never more than the cap in flight", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" }, delayMs: 20 });
    const guard = `explosion-${crypto.randomUUID()}`;
    const testEnv: Env = {
      ...edgeEnv(origin.url, { origin: { maxConcurrency: 4, maxQueue: 1_000, queueTimeoutMs: 60_000 } }),
    };
    const clock = new ManualClock(Date.now());
    const urls = Array.from({ length: 100 }, (_, i) => `/new/${i}`);
    // The deployment's guard object for this test, with the test's cap, for edges and coordinators.
    await useGuardConfig(testEnv, guard);
    await useInCoordinators(testEnv, urls, clock, guard);
    const edges = deployment(testEnv, clock);
    // Each new URL is asked by two data centers at once.
    const answers = await Promise.all(
      urls.flatMap((url, i) => [edges[i % DCS]![0]!.get(url), edges[(i + 7) % DCS]![1]!.get(url)]),
    );
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    const stats = await origin.stats();
    // The model's cold-miss term: each new URL is one coordinator call and one origin request.
    expect(stats.count).toBe(urls.length);
    expect(stats.maxInFlight).toBeLessThanOrEqual(4);
    // The model's guard term: an acquire and a release per origin request, no refusal (the
    // queue holds them all). Releases run behind the answers: wait for them.
    const predicted = load(
      shape({ keys: 0, hotKeys: 0, newUrlsPerSecond: urls.length, originLatencyMs: 20 }),
    ).guardObject;
    expect(predicted).toBe(2 * urls.length);
    const guardObject = env.GUARD.get(env.GUARD.idFromName(guard));
    const permitCalls = () => inObject(guardObject, (instance: OriginGuardObject) => instance.permitCalls);
    for (let i = 0; i < 100 && (await permitCalls()) < predicted; i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await permitCalls()).toBeGreaterThanOrEqual(predicted);
    expect(await permitCalls()).toBeLessThanOrEqual(predicted * TOLERANCE);
  });
});
