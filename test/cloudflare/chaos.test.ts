import { configureForTest } from "./in-object.ts";
import { abortAllDurableObjects, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock, systemClock, type Clock } from "../../src/core/clock.ts";
import { configFromEnv } from "../../src/cloudflare/config-env.ts";
import type { Env } from "../../src/cloudflare/env.ts";
import { coordinatorTestHooks, type KeyCoordinatorObject } from "../../src/cloudflare/key-coordinator-object.ts";
import { DurableObjectStore } from "../../src/cloudflare/do-store.ts";
import { StorageLeaseManager } from "../../src/cloudflare/storage-lease.ts";
import {
  coordinatorOf,
  dataCenter,
  dataCenters,
  edgeEnv,
  guardSnapshot,
  unreachableNamespace,
  useGuard,
  useInCoordinators,
  type Answer,
  type DataCenter,
} from "./edge-harness.ts";
import type { OriginBehaviourPatch } from "./origin-protocol.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * The chaos table of test/node/chaos.test.ts and fleet-chaos.test.ts, inside workerd: every
 * way the origin (or a Durable Object) can fail, seen from several simulated data centers
 * (each its own Cache API cache and its own isolate state), with the key's coordinator and
 * one guard object per test. Outcomes are counted (origin requests, errors), never timed:
 * expiry runs on a ManualClock; only origin delays and the filler's lease and origin
 * timers run on real time.
 */

type TestConfig = NonNullable<Parameters<typeof edgeEnv>[1]>;

const DCS = 4;
/** Cacheable for 60 s, then servable as stale-if-error for 600 s more. */
const SIE = { "cache-control": "max-age=60, stale-if-error=600" };
/** A breaker that never opens, so every stale answer says why it was served: stale-if-error. */
const NO_TRIP: TestConfig = { breaker: { failureThreshold: 1_000 } };

interface Deployment {
  origin: Awaited<ReturnType<typeof testOrigin>>;
  testEnv: Env;
  dcs: DataCenter[];
  guardName: string;
}

/**
 * One deployment for one test: its own origin namespace, its own guard object (config and
 * clock of the test), the coordinators of `paths` on the same clock and guard, and DCS data
 * centers, each its own isolate.
 */
async function deployment(o: {
  paths: string[];
  clock: Clock;
  config?: TestConfig;
  origin?: OriginBehaviourPatch;
}): Promise<Deployment> {
  const origin = await testOrigin({ headers: SIE, ...o.origin });
  const testEnv = edgeEnv(origin.url, o.config);
  const guardName = `chaos-guard-${crypto.randomUUID()}`;
  await useGuard(testEnv, guardName, o.clock);
  await useInCoordinators(testEnv, o.paths, o.clock, guardName);
  return { origin, testEnv, guardName, dcs: dataCenters(DCS, testEnv, o.clock, { ownIsolate: true }) };
}

/** `perDc` concurrent requests for `path` from every data center. */
function burst(dcs: DataCenter[], perDc: number, path: string): Promise<Answer[]> {
  return Promise.all(dcs.flatMap((dc) => Array.from({ length: perDc }, () => dc.get(path))));
}

/** Fills `path` in each data center, one after the other: one origin request, the rest from the coordinator. */
async function fillEach(dcs: DataCenter[], path: string, body: string): Promise<void> {
  for (const dc of dcs) expect(await dc.get(path)).toMatchObject({ status: 200, body });
}

/** Every answer is the stored copy, served stale, for `detail`. */
function expectStale(answers: Answer[], body: string, detail: string): void {
  expect(answers.filter((a) => a.status !== 200)).toEqual([]);
  for (const answer of answers) {
    expect(answer.body).toBe(body);
    expect(answer.cacheStatus).toMatch(
      // `collapsed` for each request that waited on another's revalidation (RFC 9211 §2.6).
      new RegExp(`^herdless; fwd=stale; (fwd-status=\\d+; )?ttl=-\\d+; (collapsed; )?detail=${detail}$`),
    );
  }
}

/**
 * Rebuilds the coordinators of `paths` with their GUARD binding unreachable (the rest of
 * their env as the runtime gave it); returns the calls they tried on the guard object.
 */
async function cutCoordinatorsFromGuard(testEnv: Env, paths: string[], clock: Clock): Promise<string[]> {
  const config = configFromEnv(testEnv);
  const tried: string[] = [];
  await Promise.all(
    paths.map((path) =>
      configureForTest(coordinatorOf(testEnv, path), (instance: KeyCoordinatorObject) => {
        const inner = instance as unknown as { env: Env };
        inner.env = {
          ...inner.env,
          GUARD: unreachableNamespace(inner.env.GUARD, {
            what: "guard object",
            onCall: (method) => tried.push(method),
          }),
        };
        instance[coordinatorTestHooks]().use({ clock, config });
      }),
    ),
  );
  return tried;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("chaos: a cached page survives every way the origin can fail, in every data center", () => {
  it("1. origin down (connection reset): 40 requests from 4 data centers, 0 errors, all stale-if-error (one data center never had the page)", async () => {
    const clock = new ManualClock(Date.now());
    const d = await deployment({ paths: ["/down"], clock, config: NO_TRIP });
    // Three data centers hold the page; the fourth never saw it and gets the coordinator's copy.
    await fillEach(d.dcs.slice(0, 3), "/down", "/down #1");
    expect(await d.origin.count()).toBe(1);

    clock.advance(61_000);
    await d.origin.set({ mode: "down" });
    const answers = await burst(d.dcs, 10, "/down");
    expect(answers).toHaveLength(40);
    expectStale(answers, "/down #1", "stale-if-error");
    // The origin was tried (the copy is stale), and its failure hid from every client.
    expect(await d.origin.count()).toBeGreaterThan(1);
  });

  it("2. origin slow past origin.timeoutMs: stale served; each timeout is a breaker failure, and after failureThreshold (3) the guard reports open", async () => {
    const clock = new ManualClock(Date.now());
    const paths = ["/slow0", "/slow1", "/slow2", "/slow3"];
    const d = await deployment({
      paths,
      clock,
      config: {
        origin: { timeoutMs: 200 },
        coordinator: { lockLeaseMs: 400 },
        breaker: { failureThreshold: 3, probeIntervalMs: 5_000 },
      },
    });
    for (const path of paths) await fillEach(d.dcs, path, `${path} #${paths.indexOf(path) + 1}`);
    expect(await d.origin.count()).toBe(4);

    clock.advance(61_000);
    await d.origin.set({ delayMs: 1_000 });
    // One timeout at a time, each from another data center: 3 origin requests, 3 breaker failures.
    for (let i = 0; i < 3; i++) {
      expect((await guardSnapshot(d.guardName)).breaker).toBe("closed");
      const answer = await d.dcs[i]!.get(paths[i]!);
      expectStale([answer], `${paths[i]} #${i + 1}`, "stale-if-error");
      expect(await d.origin.count()).toBe(5 + i);
    }
    // Each timeout aborted its origin request (it did not just stop waiting).
    await expect.poll(async () => (await d.origin.stats()).aborted).toBe(3);
    expect(await guardSnapshot(d.guardName)).toEqual({ breaker: "open", inFlight: 0, queued: 0 });

    // Open: 20 requests from every data center for another cached key, served stale, none reaching the origin.
    expectStale(await burst(d.dcs, 5, "/slow3"), "/slow3 #4", "breaker-open");
    expect(await d.origin.count()).toBe(7);
  });

  it("3. origin 5xx: a cached key is served stale; with no copy the 503 is relayed and negatively cached for origin.errorTtlMs", async () => {
    const clock = new ManualClock(Date.now());
    const d = await deployment({
      paths: ["/5xx", "/5xx-cold"],
      clock,
      config: { ...NO_TRIP, origin: { errorTtlMs: 2_000 } },
    });
    await fillEach(d.dcs, "/5xx", "/5xx #1");
    clock.advance(61_000);
    // No freshness of its own: a 503 with max-age would be stored as any response (RFC 9111 §3).
    await d.origin.set({ status: 503, body: "overloaded", headers: { "content-type": "text/plain; charset=utf-8" } });

    const stale = await burst(d.dcs, 5, "/5xx");
    // The callers of the failing fetch see its 503; those after it, the key's backoff (no origin call).
    expectStale(stale, "/5xx #1", "(stale-if-error|backoff)");
    expect(stale.some((answer) => answer.cacheStatus.endsWith("detail=stale-if-error"))).toBe(true);
    for (const answer of stale)
      if (answer.cacheStatus.endsWith("detail=stale-if-error")) expect(answer.cacheStatus).toContain("fwd-status=503");
    const afterStale = await d.origin.count();

    const first = await d.dcs[0]!.get("/5xx-cold");
    expect(first).toMatchObject({
      status: 503,
      body: "overloaded",
      cacheStatus: "herdless; fwd=uri-miss; fwd-status=503; detail=origin-error",
    });
    expect(await d.origin.count()).toBe(afterStale + 1);
    // Within errorTtlMs: 20 more requests from every data center, the error from the cache, none at the origin.
    const cached = await burst(d.dcs, 5, "/5xx-cold");
    for (const answer of cached) {
      expect(answer).toMatchObject({ status: 503, body: "overloaded" });
      expect(answer.cacheStatus).toMatch(/; detail=negative$/);
    }
    expect(await d.origin.count()).toBe(afterStale + 1);
    // Briefly: past errorTtlMs the origin is asked again.
    clock.advance(2_001);
    expect((await d.dcs[1]!.get("/5xx-cold")).status).toBe(503);
    expect(await d.origin.count()).toBe(afterStale + 2);
  });

  it("4. truncated body: never stored, never served; stale meanwhile; after recovery every data center gets the full body", async () => {
    const clock = new ManualClock(Date.now());
    const config: TestConfig = { breaker: { failureThreshold: 1_000, probeIntervalMs: 1_000 } };
    const d = await deployment({ paths: ["/trunc", "/trunc-cold"], clock, config });
    await fillEach(d.dcs, "/trunc", "/trunc #1");
    clock.advance(61_000);
    // The origin promises a longer body than it sends, then resets: what arrives is "PARTIAL".
    await d.origin.set({ mode: "truncate", body: "PARTIAL" });

    const seen: Answer[] = [];
    const stale = await burst(d.dcs, 5, "/trunc");
    expectStale(stale, "/trunc #1", "(stale-if-error|backoff)");
    // No copy to hide it: the error, then a quick 503 in every data center while the key backs off.
    for (const [i, dc] of d.dcs.entries()) {
      const cold = await dc.get("/trunc-cold");
      expect([cold.status, cold.cacheStatus]).toEqual(
        i === 0
          ? [502, "herdless; fwd=uri-miss; detail=origin-error"]
          : [503, "herdless; fwd=uri-miss; detail=backoff"],
      );
      seen.push(cold);
    }
    const failedTries = await d.origin.count();
    expect(failedTries).toBe(1 + 1 + 1);

    await d.origin.set({
      mode: "up",
      paths: { "/trunc": { body: "trunc, complete" }, "/trunc-cold": { body: "cold, complete" } },
    });
    // The keys' first backoff passes: breaker.backoffBaseMs (1 s at most), and for the key whose
    // copy answered, breaker.probeIntervalMs (1 s) to half as much again.
    clock.advance(1_500);
    for (const dc of d.dcs) seen.push(await dc.get("/trunc"), await dc.get("/trunc-cold"));
    // One refresh per key, shared by every data center.
    expect(await d.origin.count()).toBe(failedTries + 2);
    for (const dc of d.dcs) {
      const hit = await dc.get("/trunc");
      expect(hit).toMatchObject({ status: 200, body: "trunc, complete" });
      expect(hit.headers.get("content-length")).toBe(String("trunc, complete".length));
      seen.push(hit, await dc.get("/trunc-cold"));
    }
    for (const answer of [...stale, ...seen]) expect(answer.body).not.toContain("PARTIAL");
    expect(new Set(seen.filter((a) => a.status === 200).map((a) => a.body))).toEqual(
      new Set(["trunc, complete", "cold, complete"]),
    );
  });

  it("5. connection reset mid-fetch (the origin takes the request, then drops the connection): 20 requests, 0 errors, stale served", async () => {
    const clock = new ManualClock(Date.now());
    const d = await deployment({ paths: ["/reset"], clock, config: NO_TRIP });
    await fillEach(d.dcs, "/reset", "/reset #1");
    clock.advance(61_000);
    await d.origin.set({ mode: "down", delayMs: 300 });

    const pending = burst(d.dcs, 5, "/reset");
    // The coordinator's fetch is in flight at the origin when the connection goes.
    await d.origin.waitFor({ inFlight: 1 });
    const answers = await pending;
    expectStale(answers, "/reset #1", "stale-if-error");
    const stats = await d.origin.stats();
    expect(stats.count).toBeGreaterThan(1);
    expect(stats.aborted).toBe(stats.count - 1);
  });
});

describe("chaos: a Durable Object fails", () => {
  // edge-lease.test.ts covers one request after a dead holder (object reset) and an origin
  // call that hangs (aborted within the lease). Added here: the whole deployment at once.
  it("6. a lease holder died mid-fetch (object reset with the lease held): 80 requests from 4 data centers wait it out, then 1 origin request, one body", async () => {
    const d = await deployment({
      paths: ["/orphan"],
      clock: systemClock,
      config: { origin: { timeoutMs: 200 }, coordinator: { lockLeaseMs: 400 } },
    });
    const key = "GET https://edge.test/orphan";
    const dead = await runInDurableObject(coordinatorOf(d.testEnv, "/orphan"), (_instance, state) =>
      new StorageLeaseManager(state.storage, systemClock).acquire(key, 400),
    );
    expect(dead).toBeDefined();
    await abortAllDurableObjects();
    // The rebuilt objects get the test's config again (the lease is in storage, not in the config).
    await useGuard(d.testEnv, d.guardName, systemClock);
    await useInCoordinators(d.testEnv, ["/orphan"], systemClock, d.guardName);

    const answers = await burst(d.dcs, 20, "/orphan");
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(new Set(answers.map((a) => a.body))).toEqual(new Set(["/orphan #1"]));
    expect(await d.origin.count()).toBe(1);
    const stored = await runInDurableObject(coordinatorOf(d.testEnv, "/orphan"), (_instance, state) =>
      new DurableObjectStore(state.storage, systemClock).get(key),
    );
    expect(stored!.requestAt).toBeGreaterThanOrEqual(dead!.expiresAt);
    expect(stored!.token).toBeGreaterThan(dead!.token);
  });

  // edge-errors.test.ts covers cached keys during a coordinator outage (stale, then a fetch
  // through the fallback). Added here: a cold key, with many callers per isolate.
  it("7. coordinator unreachable: concurrent requests for an uncached key make at most 1 origin request per isolate", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const d = await deployment({ paths: [], clock: systemClock, origin: { delayMs: 200 } });
    const tried: string[] = [];
    const outage: Env = {
      ...d.testEnv,
      COORDINATOR: unreachableNamespace(d.testEnv.COORDINATOR, { onCall: (method) => tried.push(method) }),
    };
    const dcs = d.dcs.map((dc) => dataCenter(dc.name, outage, systemClock, { ownIsolate: true }));

    // One data center, one isolate: 50 concurrent callers, 1 origin request.
    const one = await burst(dcs.slice(0, 1), 50, "/cold-one");
    expect(one.filter((a) => a.status !== 200)).toEqual([]);
    expect(new Set(one.map((a) => a.body))).toEqual(new Set(["/cold-one #1"]));
    expect(await d.origin.count("/cold-one")).toBe(1);

    // Four isolates, 25 callers each: at most 4, one body per isolate.
    const all = await burst(dcs, 25, "/cold-all");
    expect(all.filter((a) => a.status !== 200)).toEqual([]);
    for (let i = 0; i < DCS; i++) expect(new Set(all.slice(i * 25, (i + 1) * 25).map((a) => a.body)).size).toBe(1);
    expect(await d.origin.count("/cold-all")).toBeLessThanOrEqual(DCS);
    // Every request asked its coordinator first, none of that reached the origin twice. An
    // isolate's requests for one key share its one call in flight (IsolateFlights) and its
    // failure, so how many of the 150 asked for themselves depends on when each arrived: at
    // least one per isolate per burst, at most one each.
    const fills = tried.filter((m) => m === "fill").length;
    expect(fills).toBeGreaterThanOrEqual(1 + DCS);
    expect(fills).toBeLessThanOrEqual(150);
    expect(warn.mock.calls.some(([line]) => String(line).includes("coordinator unavailable"))).toBe(true);
  });

  // guard-chaos.test.ts covers DurableObjectGuard itself (COORDINATOR_UNAVAILABLE after one
  // retry, hung objects, overload). Added here: requests through the edge and the coordinator.
  describe("8. guard object unreachable: no origin call without it (the cap is the promise); a copy is served stale, the rest 503 with Retry-After", () => {
    it("relayed requests (a bypass route) from one isolate: 20 × 503 with Retry-After, 0 at the origin", async () => {
      const origin = await testOrigin({ delayMs: 50 });
      const testEnv = edgeEnv(origin.url, {
        origin: { maxConcurrency: 2 },
        routes: [{ match: "/live/*", bypass: true }],
      });
      const tried: string[] = [];
      const outage: Env = {
        ...testEnv,
        GUARD: unreachableNamespace(testEnv.GUARD, { what: "guard object", onCall: (method) => tried.push(method) }),
      };
      const dc = dataCenter(`guardless-${crypto.randomUUID()}`, outage, systemClock, { ownIsolate: true });
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => dc.get(`/live/${i}`)));
      for (const answer of answers) {
        expect(answer.status).toBe(503);
        expect(answer.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
      }
      expect(await origin.count()).toBe(0);
      // Each relay asked the guard object, and once more on a fresh stub.
      expect(tried.filter((m) => m === "acquire")).toHaveLength(40);
    });

    it("attack: 20 keys whose coordinators are cut off from the guard object and 20 whose are not, asked at once from 4 data centers: never more than origin.maxConcurrency (2) at the origin", async () => {
      const clock = new ManualClock(Date.now());
      const reachable = Array.from({ length: 20 }, (_, i) => `/reachable/${i}`);
      const cutCold = Array.from({ length: 19 }, (_, i) => `/cut/${i}`);
      const d = await deployment({
        paths: [...reachable, "/cut-warm"],
        clock,
        config: { ...NO_TRIP, origin: { maxConcurrency: 2 } },
        origin: { delayMs: 50 },
      });
      // One cut-off key has a copy, stale by the time of the attack but inside stale-if-error.
      expect((await d.dcs[0]!.get("/cut-warm")).status).toBe(200);
      clock.advance(61_000);
      const tried = await cutCoordinatorsFromGuard(d.testEnv, ["/cut-warm", ...cutCold], clock);

      const asked = [...reachable, "/cut-warm", ...cutCold];
      const answers = await Promise.all(
        asked.flatMap((path, i) => [d.dcs[i % DCS]!.get(path), d.dcs[(i + 1) % DCS]!.get(path)]),
      );
      const stats = await d.origin.stats();
      expect(stats.maxInFlight).toBeLessThanOrEqual(2);
      // The warm-up and one request per reachable key; none for a cut-off key.
      expect(stats.count).toBe(1 + reachable.length);
      const of = (path: string) => answers.filter((_, i) => asked[Math.floor(i / 2)] === path);
      for (const path of reachable) for (const answer of of(path)) expect(answer.status).toBe(200);
      for (const answer of of("/cut-warm")) {
        expect(answer.status).toBe(200);
        expect(answer.body).toBe("/cut-warm #1");
        expect(answer.cacheStatus).toMatch(/^herdless; fwd=stale; ttl=-\d+; detail=coordinator-unavailable$/);
      }
      for (const path of cutCold)
        for (const answer of of(path)) {
          expect(answer.status).toBe(503);
          expect(answer.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
          expect(answer.cacheStatus).toMatch(/detail=coordinator-unavailable/);
        }
      expect(tried.filter((m) => m === "acquire").length).toBeGreaterThanOrEqual(2 * (cutCold.length + 1));
    });

    it("coordinator and guard object both unreachable: a cold key gets 503 with Retry-After, 0 at the origin", async () => {
      vi.spyOn(console, "warn").mockImplementation(() => undefined);
      const origin = await testOrigin({ headers: SIE, delayMs: 100 });
      const testEnv = edgeEnv(origin.url);
      const outage: Env = {
        ...testEnv,
        COORDINATOR: unreachableNamespace(testEnv.COORDINATOR),
        GUARD: unreachableNamespace(testEnv.GUARD, { what: "guard object" }),
      };
      const dc = dataCenter(`alone-${crypto.randomUUID()}`, outage, systemClock, { ownIsolate: true });
      const answers = await burst([dc], 20, "/alone");
      for (const answer of answers) {
        expect(answer.status).toBe(503);
        expect(answer.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
      }
      expect(await origin.count()).toBe(0);
    });
  });
});

describe("outcome 1 in workerd: the origin's load has a hard cap", () => {
  it(
    "500 concurrent cold misses across 50 keys from 4 data centers: never more than origin.maxConcurrency (4) at the origin; every client gets 200 or 503 with Retry-After",
    { timeout: 60_000 },
    async () => {
      const keys = Array.from({ length: 50 }, (_, i) => `/cap${i}`);
      // 4 slots and 20 waiting: the other flights are shed at once (queue-full), never sent.
      const d = await deployment({
        paths: keys,
        clock: systemClock,
        config: { origin: { maxConcurrency: 4, maxQueue: 20 } },
        origin: { delayMs: 200 },
      });
      const answers = await Promise.all(
        Array.from({ length: 500 }, (_, i) => {
          const key = keys[i % keys.length]!;
          return d.dcs[Math.floor(i / 125)]!.get(key).then((answer) => ({ key, answer }));
        }),
      );
      const stats = await d.origin.stats();
      expect(stats.maxInFlight).toBeLessThanOrEqual(4);
      const served = answers.filter(({ answer }) => answer.status === 200);
      const shed = answers.filter(({ answer }) => answer.status === 503);
      expect(served.length + shed.length).toBe(500);
      for (const { answer } of shed) {
        expect(answer.headers.get("retry-after")).toMatch(/^[1-9]\d*$/);
        // `collapsed`: it waited on another request's attempt, which the guard refused.
        expect(answer.cacheStatus).toMatch(/^herdless; fwd=uri-miss; (collapsed; )?detail=queue-full$/);
      }
      // Exactly one origin request per key that was served, one body per key, none for the shed.
      const servedKeys = new Set(served.map((s) => s.key));
      expect(stats.count).toBe(servedKeys.size);
      expect(new Set(stats.requests.map((r) => r.path))).toEqual(servedKeys);
      for (const key of servedKeys)
        expect(new Set(served.filter((s) => s.key === key).map((s) => s.answer.body)).size).toBe(1);
      expect(await guardSnapshot(d.guardName)).toEqual({ breaker: "closed", inFlight: 0, queued: 0 });
    },
  );
});

describe("outcome 2 in workerd: the breaker, one for all data centers", () => {
  it(
    "forced outage: while open, at most 1 probe per breaker.probeIntervalMs reaches the origin across 4 data centers; the cached key gets 0 errors",
    { timeout: 60_000 },
    async () => {
      const clock = new ManualClock(Date.now());
      const probeIntervalMs = 5_000;
      const intervals = 6;
      const fails = Array.from({ length: 5 }, (_, i) => `/fail${i}`);
      const cold = (k: number, dc: number, j: number) => `/cold${k}-${dc}-${j}`;
      const colds = Array.from({ length: intervals }, (_, k) =>
        Array.from({ length: DCS }, (_, dc) => Array.from({ length: 4 }, (_, j) => cold(k, dc, j))),
      ).flat(2);
      const d = await deployment({
        paths: ["/cached", ...fails, ...colds, "/after"],
        clock,
        // A key that was the failing probe backs off no longer than an interval, so the recovery
        // below refreshes /cached within half an interval (by default its backoff may last up to 60 s).
        config: {
          breaker: { failureThreshold: 3, probeIntervalMs, backoffMaxMs: probeIntervalMs },
          origin: { errorTtlMs: 0 },
        },
      });
      await fillEach(d.dcs, "/cached", "/cached #1");
      await d.origin.set({ mode: "down" });
      clock.advance(61_000);

      // Three failures open it; the next two are refused without reaching the origin.
      const opening = [];
      for (const [i, path] of fails.entries()) opening.push(await d.dcs[i % DCS]!.get(path));
      expect(opening.map((a) => a.status)).toEqual([502, 502, 502, 503, 503]);
      expect(await d.origin.count()).toBe(4);
      expect((await guardSnapshot(d.guardName)).breaker).toBe("open");

      let cachedErrors = 0;
      for (let k = 0; k < intervals; k++) {
        clock.advance(probeIntervalMs);
        const before = await d.origin.count();
        // Per data center 4 requests for the cached key and 4 for cold keys, all at once.
        const answers = await Promise.all(
          d.dcs.flatMap((dc, i) => [
            ...Array.from({ length: 4 }, () => dc.get("/cached").then((answer) => ({ cached: true, answer }))),
            ...Array.from({ length: 4 }, (_, j) => dc.get(cold(k, i, j)).then((answer) => ({ cached: false, answer }))),
          ]),
        );
        // The probe of this interval (it fails: the origin is down) and nothing else.
        expect(await d.origin.count()).toBe(before + 1);
        for (const { cached, answer } of answers) {
          if (cached) {
            if (answer.status !== 200 || answer.body !== "/cached #1") cachedErrors++;
            continue;
          }
          // A cold key is refused with Retry-After, unless it was the probe (then the origin's failure).
          if (answer.status !== 502) {
            expect(answer.status).toBe(503);
            expect(answer.headers.get("retry-after")).toMatch(/^\d+$/);
            expect(answer.cacheStatus).toMatch(/detail=breaker-open$/);
          }
        }
        expect(answers.filter(({ cached, answer }) => !cached && answer.status === 502).length).toBeLessThanOrEqual(1);
        expect((await guardSnapshot(d.guardName)).breaker).toBe("open");
      }
      expect(cachedErrors).toBe(0);
      expect(await d.origin.count()).toBe(4 + intervals);

      // The origin comes back: the next probe succeeds and closes the breaker for everyone.
      await d.origin.set({ mode: "up" });
      clock.advance(probeIntervalMs);
      expect((await d.dcs[2]!.get("/after")).status).toBe(200);
      expect((await guardSnapshot(d.guardName)).breaker).toBe("closed");
      // Keys that backed off in the outage return within half a probe interval of the close,
      // each at its own moment so that they do not come back as a herd (key-backoff.ts): when
      // /cached was the last interval's probe, its copy stands in until its moment comes.
      clock.advance(probeIntervalMs / 2);
      const refreshed = await d.dcs[3]!.get("/cached");
      expect(refreshed).toMatchObject({ status: 200, body: `/cached #${await d.origin.count()}` });
    },
  );
});
