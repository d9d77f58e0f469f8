import { configureForTest, inObject } from "./in-object.ts";
import { abortAllDurableObjects, runDurableObjectAlarm } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig, type ConfigInput } from "../../src/core/config.ts";
import { isHerdlessError, type HerdlessErrorCode } from "../../src/core/errors.ts";
import { DurableObjectGuard, type GuardPermit } from "../../src/cloudflare/do-guard.ts";
import { guardTestHooks, PERMIT_MARGIN_MS, type OriginGuardObject } from "../../src/cloudflare/origin-guard-object.ts";
import { testOrigin } from "./test-origin.ts";

type Origin = Partial<ConfigInput["origin"]>;

/**
 * A guard object of its own (a fresh name) with `config`, several "edges" (one
 * DurableObjectGuard each, as separate data centers would hold), and `apply()` to give a
 * reset instance the same config and clock again.
 */
async function guardObject(
  origin: Origin,
  o: { edges?: number; clock?: ManualClock; breaker?: ConfigInput["breaker"] } = {},
) {
  const name = `guard-${crypto.randomUUID()}`;
  // A fresh stub per use: one that saw its object reset stays broken.
  const stub = () => env.GUARD.get(env.GUARD.idFromName(name));
  const config = parseConfig({ origin: { url: "http://origin.test", ...origin }, breaker: o.breaker });
  const apply = () =>
    configureForTest(stub(), (instance: OriginGuardObject) =>
      instance[guardTestHooks]({ config, ...(o.clock ? { clock: o.clock } : {}) }),
    );
  await apply();
  const edges = Array.from({ length: o.edges ?? 3 }, () => new DurableObjectGuard(env.GUARD, name));
  return { name, stub, edges, apply, edge: edges[0]! };
}

type Attempt = { granted: GuardPermit } | { refused: HerdlessErrorCode; retryAfterMs: number | undefined };

async function attempt(guard: DurableObjectGuard): Promise<Attempt> {
  try {
    return { granted: await guard.acquire("foreground") };
  } catch (error) {
    if (!isHerdlessError(error)) throw error;
    return { refused: error.code, retryAfterMs: error.retryAfterMs };
  }
}

/** `n` acquirers at once, spread over the edges. */
const burst = (edges: DurableObjectGuard[], n: number) =>
  Promise.all(Array.from({ length: n }, (_, i) => attempt(edges[i % edges.length]!)));
const grants = (attempts: Attempt[]) => attempts.flatMap((a) => ("granted" in a ? [a.granted] : []));
const refusals = (attempts: Attempt[]) => attempts.flatMap((a) => ("refused" in a ? [a] : []));

describe("OriginGuardObject: the global cap", () => {
  it("keeps 500 concurrent acquirers from five edges to 4 at the origin; the rest are told when to retry", async () => {
    const origin = await testOrigin({ mode: "hold" });
    const { edges } = await guardObject(
      { url: origin.url, maxConcurrency: 4, maxQueue: 100, queueTimeoutMs: 20_000 },
      { edges: 5 },
    );
    let outstanding = 0;
    let maxOutstanding = 0;
    const results = await Promise.all(
      Array.from({ length: 500 }, async (_, i): Promise<Attempt> => {
        const result = await attempt(edges[i % edges.length]!);
        if (!("granted" in result)) return result;
        maxOutstanding = Math.max(maxOutstanding, ++outstanding);
        const answer = fetch(`${origin.url}/p${i}`);
        // Each holder lets one parked request go (not necessarily its own): releases match requests.
        while ((await origin.release(1)) === 0) await origin.waitFor({ held: 1 });
        await (await answer).text();
        outstanding--;
        await result.granted.release("success");
        return result;
      }),
    );
    const stats = await origin.stats();
    expect(stats.maxInFlight).toBeLessThanOrEqual(4);
    expect(maxOutstanding).toBeLessThanOrEqual(4);
    const granted = grants(results).length;
    expect(stats.count).toBe(granted);
    const refused = refusals(results);
    expect(granted + refused.length).toBe(500);
    // The first 4 plus every one of the 100 that queued, unless a wait outlived queueTimeoutMs.
    expect(granted).toBeGreaterThanOrEqual(refused.some((r) => r.refused === "QUEUE_TIMEOUT") ? 4 : 104);
    for (const r of refused) {
      expect(["QUEUE_FULL", "QUEUE_TIMEOUT"]).toContain(r.refused);
      expect(r.retryAfterMs).toBeGreaterThan(0);
    }
    expect(await edges[0]!.snapshot()).toEqual({ breaker: "closed", inFlight: 0, queued: 0 });
  });
});

describe("OriginGuardObject: the breaker, one for all edges", () => {
  it("opens for everyone, admits exactly one probe per interval, stays open across a reset, closes on a good probe", async () => {
    const clock = new ManualClock(Date.now());
    const probeIntervalMs = 5_000;
    const g = await guardObject(
      { maxConcurrency: 4 },
      { edges: 3, clock, breaker: { failureThreshold: 3, probeIntervalMs } },
    );
    const failing = grants(await burst(g.edges, 3));
    expect(failing).toHaveLength(3);
    for (const [i, permit] of failing.entries()) await permit.release("failure", `/k${i}`);
    expect((await g.edge.snapshot()).breaker).toBe("open");
    const shut = await burst(g.edges, 9);
    expect(grants(shut)).toHaveLength(0);
    for (const r of refusals(shut)) expect(r).toEqual({ refused: "BREAKER_OPEN", retryAfterMs: probeIntervalMs });

    const K = 4;
    let probes = 0;
    for (let k = 0; k < K; k++) {
      clock.advance(probeIntervalMs);
      const first = await burst(g.edges, 30);
      const probe = grants(first);
      expect(probe).toHaveLength(1);
      expect(probe[0]!.probe).toBe(true);
      expect(refusals(first).every((r) => r.refused === "BREAKER_OPEN" && r.retryAfterMs! > 0)).toBe(true);
      // While it runs, and after it fails, nobody else gets through in this interval.
      expect(grants(await burst(g.edges, 30))).toHaveLength(0);
      await probe[0]!.release("failure");
      expect(grants(await burst(g.edges, 30))).toHaveLength(0);
      probes += probe.length;
    }
    expect(probes).toBe(K);

    await abortAllDurableObjects();
    // A fresh instance, before any test hook: the breaker comes from storage.
    expect((await new DurableObjectGuard(env.GUARD, g.name).snapshot()).breaker).toBe("open");
    await g.apply();
    // The edges' stubs broke with the reset; each retries once on a fresh one.
    const afterReset = await burst(g.edges, 9);
    expect(grants(afterReset)).toHaveLength(0);
    expect(refusals(afterReset).every((r) => r.refused === "BREAKER_OPEN")).toBe(true);

    clock.advance(probeIntervalMs);
    const probe = grants(await burst(g.edges, 30));
    expect(probe).toHaveLength(1);
    await probe[0]!.release("success");
    expect((await g.edge.snapshot()).breaker).toBe("closed");
    const open = grants(await burst(g.edges, 4));
    expect(open).toHaveLength(4);
    expect(open.some((p) => p.probe)).toBe(false);
  });
});

describe("OriginGuardObject: what the breaker saves", () => {
  it("saves each failure at once and a slice's successes once: a reset object still opens on the failures before it", async () => {
    // On a slice boundary (windowMs 10 s: slices of 1 s), so every call below is in one slice.
    const clock = new ManualClock(1_700_000_000_000);
    const g = await guardObject(
      { maxConcurrency: 4 },
      { edges: 1, clock, breaker: { failureThreshold: 3, minFailingKeys: 3, failureRate: 0.4 } },
    );
    const saved = () =>
      inObject(g.stub(), (_instance, state) => {
        const row = state.storage.sql
          .exec<{ record: string }>("SELECT record FROM herdless_guard_breaker WHERE id = 1")
          .one();
        return (JSON.parse(row.record) as { state: string; buckets: unknown[] }).buckets;
      });
    const call = async (outcome: "success" | "failure", key: string) =>
      (await g.edge.acquire("foreground")).release(outcome, key);

    for (let i = 0; i < 4; i++) await call("success", `/ok${i}`);
    // The first success of the slice was written; the next three only counted in memory.
    expect(await saved()).toEqual([{ at: clock.now(), calls: 1, failures: 0, keys: [] }]);
    await call("failure", "/a");
    await call("failure", "/b");
    // Each failure is written at once, with the calls counted before it.
    expect(await saved()).toMatchObject([{ calls: 6, failures: 2 }]);
    expect((await g.edge.snapshot()).breaker).toBe("closed");

    await abortAllDurableObjects();
    await g.apply();
    // A third failing key after the reset: 3 of 7 calls, from 3 keys, opens it for everyone.
    await new DurableObjectGuard(env.GUARD, g.name).acquire("foreground").then((p) => p.release("failure", "/c"));
    expect((await new DurableObjectGuard(env.GUARD, g.name).snapshot()).breaker).toBe("open");
  });
});

describe("OriginGuardObject: permits are leases", () => {
  const leaseMs = 10_000 + PERMIT_MARGIN_MS;

  it("reclaims a permit whose holder never releases, after its lease; a late release is a no-op", async () => {
    const clock = new ManualClock(Date.now());
    const g = await guardObject({ maxConcurrency: 2, maxQueue: 0, timeoutMs: 10_000 }, { clock });
    const dead = grants(await burst(g.edges, 2));
    expect(dead).toHaveLength(2);
    expect(await attempt(g.edge)).toMatchObject({ refused: "QUEUE_FULL" });
    clock.advance(leaseMs - 1);
    expect(await attempt(g.edge)).toMatchObject({ refused: "QUEUE_FULL" });
    clock.advance(1);
    const live = grants(await burst(g.edges, 2));
    expect(live).toHaveLength(2);
    expect((await g.edge.snapshot()).inFlight).toBe(2);
    // The dead holders come back: their ids are gone, so they free nobody else's slot.
    for (const [i, permit] of dead.entries()) await permit.release("failure", `/k${i}`);
    await g.stub().release("no-such-permit", "success");
    expect(await g.edge.snapshot()).toEqual({ breaker: "closed", inFlight: 2, queued: 0 });
    for (const permit of live) await permit.release("success");
    expect((await g.edge.snapshot()).inFlight).toBe(0);
  });

  it("hands a reclaimed slot to a queued caller when the alarm runs, with no new call arriving", async () => {
    const clock = new ManualClock(Date.now());
    const g = await guardObject(
      { maxConcurrency: 1, maxQueue: 5, queueTimeoutMs: 20_000, timeoutMs: 10_000 },
      { clock },
    );
    expect(grants(await burst(g.edges, 1))).toHaveLength(1);
    const waiting = attempt(g.edges[1]!);
    await expect.poll(async () => (await g.stub().snapshot()).queued).toBe(1);
    clock.advance(leaseMs);
    expect(await runDurableObjectAlarm(g.stub())).toBe(true);
    const result = await waiting;
    expect("granted" in result).toBe(true);
    expect(await g.stub().snapshot()).toEqual({ breaker: "closed", inFlight: 1, queued: 0 });
  });

  it("keeps live permits across a reset, so the cap holds while their holders still call the origin", async () => {
    const clock = new ManualClock(Date.now());
    const g = await guardObject({ maxConcurrency: 1, maxQueue: 0, timeoutMs: 10_000 }, { clock });
    const [held] = grants(await burst(g.edges, 1));
    await abortAllDurableObjects();
    await g.apply();
    expect(await attempt(g.edges[1]!)).toMatchObject({ refused: "QUEUE_FULL" });
    // Its holder, unaware of the reset, releases through its old edge.
    await held!.release("success");
    expect(grants(await burst(g.edges, 1))).toHaveLength(1);
  });
});
