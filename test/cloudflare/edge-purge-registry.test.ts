import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { emptyPurges, purgeKeyOf, purgeVerdict } from "../../src/core/admin/purge.ts";
import { configFromEnv } from "../../src/cloudflare/config-env.ts";
import { testEntry } from "../../src/core/store/store-conformance.ts";
import { ManualClock } from "../../src/core/clock.ts";
import type { Env } from "../../src/cloudflare/env.ts";
import { DurableObjectPurgeRegistry, type PurgeRegistryObject } from "../../src/cloudflare/purge-registry-object.ts";
import { ADMIN_TOKEN, adminCall, dataCenters, EDGE, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * The real PURGES namespace, with its snapshot() reads counted, or every call failing;
 * `reads.failNext` makes that many of the next reads fail (a call the runtime aborted).
 */
function purgesNamespace(mode: "count" | "down") {
  const reads = { snapshot: 0, failNext: 0 };
  const real = () => env.PURGES.get(env.PURGES.idFromName("global"));
  const fail = () => Promise.reject(new Error("Durable Object unreachable (simulated)"));
  const stub = {
    snapshot: () => {
      if (mode === "down") return fail();
      if (reads.failNext > 0) return (reads.failNext--, fail());
      reads.snapshot++;
      return real().snapshot();
    },
    purge: (command: Parameters<PurgeRegistryObject["purge"]>[0]) => (mode === "down" ? fail() : real().purge(command)),
  };
  const namespace = { idFromName: (name: string) => env.PURGES.idFromName(name), get: () => stub };
  return { reads, namespace: namespace as unknown as Env["PURGES"] };
}

/** One data center in its own isolate, with a 1 s purge bound and its purge-list reads counted. */
async function countedDataCenter() {
  const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
  const { reads, namespace } = purgesNamespace("count");
  const clock = new ManualClock(Date.now());
  const [dc] = dataCenters(
    1,
    { ...edgeEnv(origin.url, { admin: { purgePropagationMs: 1_000 } }), PURGES: namespace },
    clock,
    { ownIsolate: true },
  );
  return { origin, reads, clock, dc: dc! };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("the edge's copy of the purge list", () => {
  it("is read once per isolate per admin.purgePropagationMs: 50 hits cost 1 registry read, the next after the bound 1 more", async () => {
    const { origin, reads, clock, dc } = await countedDataCenter();
    for (let i = 0; i < 50; i++) expect((await dc.get("/often")).status).toBe(200);
    expect(reads.snapshot).toBe(1);
    expect(await origin.count()).toBe(1);
    clock.advance(1_000);
    for (let i = 0; i < 10; i++) expect((await dc.get("/often")).cacheStatus).toMatch(/^herdless; hit; /);
    expect(reads.snapshot).toBe(2);
  });

  it("is renewed behind the hits in the last quarter of its bound: steady hits never wait on a read of the list", async () => {
    const { origin, reads, clock, dc } = await countedDataCenter();
    expect((await dc.get("/renewed")).cacheStatus).toMatch(/fwd=uri-miss/);
    expect(reads.snapshot).toBe(1);
    // Not yet due: hits, no read.
    clock.advance(600);
    await (
      await dc.get("/renewed")
    ).settled;
    expect(reads.snapshot).toBe(1);
    // Due (750 ms of a 1 s bound) but within the bound: hits, and one renewal behind them (not one per hit).
    clock.advance(200);
    const renewing = await Promise.all([dc.get("/renewed"), dc.get("/renewed"), dc.get("/renewed")]);
    for (const answer of renewing) expect(answer.cacheStatus).toMatch(/^herdless; hit; /);
    await Promise.all(renewing.map((answer) => answer.settled));
    expect(reads.snapshot).toBe(2);
    // 1.4 s after the first read, 0.6 s after the renewal: the renewed copy answers, no read.
    clock.advance(600);
    expect((await dc.get("/renewed")).cacheStatus).toMatch(/^herdless; hit; /);
    expect(reads.snapshot).toBe(2);
    expect(await origin.count()).toBe(1);
  });

  it("is renewed early enough when reads of the list are slow: with reads of 300 ms, always or one in three, steady traffic never finds the copy lapsed, and quick reads bring the renewals back to one per 750 ms", async () => {
    const clock = new ManualClock(Date.now());
    let readMs = (_read: number) => 300;
    let reads = 0;
    // Each read of the registry object answers once the clock has moved readMs past its start.
    const pending: { due: number; answer: () => void }[] = [];
    const stub = {
      snapshot: () =>
        new Promise<ReturnType<typeof emptyPurges>>((resolve) => {
          pending.push({ due: clock.now() + readMs(reads++), answer: () => resolve(emptyPurges()) });
        }),
    };
    const namespace = { idFromName: (name: string) => env.PURGES.idFromName(name), get: () => stub };
    const registry = new DurableObjectPurgeRegistry(namespace as unknown as Env["PURGES"], 1_000, () => clock.now());
    const background = (work: Promise<unknown>) => void work.catch(() => undefined);
    const tick = async (ms: number) => {
      clock.advance(ms);
      for (const read of pending.filter((read) => read.due <= clock.now())) {
        pending.splice(pending.indexOf(read), 1);
        read.answer();
      }
      // The read's continuations (load, keep, the end of `loading`) are a few microtasks.
      for (let i = 0; i < 20; i++) await Promise.resolve();
    };
    // A request every 25 ms of the clock; `lapsed` counts the ones that would wait on a read.
    const traffic = async (ms: number) => {
      let lapsed = 0;
      for (let t = 0; t < ms; t += 25) {
        if (registry.fresh(background) === undefined) lapsed++;
        await tick(25);
      }
      return lapsed;
    };
    let read = false;
    void Promise.resolve(registry.current(background)).then(() => (read = true));
    while (!read) await tick(25);
    expect(await traffic(5_000)).toBe(0);
    // Renewed every 500 ms at most (half the bound), not every 250.
    expect(reads).toBeLessThanOrEqual(1 + 5_000 / 500);
    // As under a loaded runtime: most reads quick, one in three slow.
    readMs = (read) => (read % 3 === 0 ? 300 : 5);
    expect(await traffic(10_000)).toBe(0);
    readMs = () => 5;
    await traffic(10_000);
    const before = reads;
    expect(await traffic(6_000)).toBe(0);
    // Back to one read per 750 ms of a 1 s bound (the last quarter), as when reads were always quick.
    expect(reads - before).toBeLessThanOrEqual(Math.ceil(6_000 / 750));
  });

  it("requests arriving while the copy is being read share that read: 20 concurrent first requests, then 20 past the bound, cost 1 registry read each", async () => {
    const { origin, reads, clock, dc } = await countedDataCenter();
    const paths = Array.from({ length: 20 }, (_, i) => `/together/${i}`);
    const first = await Promise.all(paths.map((path) => dc.get(path)));
    expect(first.map((r) => r.status)).toEqual(paths.map(() => 200));
    expect(reads.snapshot).toBe(1);
    clock.advance(1_000);
    // Past the bound the data center's copy is as old as the isolate's: the object is read again, once.
    const again = await Promise.all(paths.map((path) => dc.get(`${path}?again`)));
    expect(again.map((r) => r.status)).toEqual(paths.map(() => 200));
    expect(reads.snapshot).toBe(2);
    expect(await origin.count()).toBe(40);
  });

  it("past its bound, requests for keys in memory share the isolate's one read of the list: a purge recorded meanwhile is honoured by every one, the other key stays a hit", async () => {
    const { origin, reads, clock, dc } = await countedDataCenter();
    for (const path of ["/lapsed/purged", "/lapsed/kept"])
      expect((await dc.get(path)).cacheStatus).toMatch(/fwd=uri-miss/);
    expect(reads.snapshot).toBe(1);
    // Another data center purges one of them while this isolate's copy ages past its bound.
    await env.PURGES.get(env.PURGES.idFromName("global")).purge({ urls: [`${EDGE}/lapsed/purged`] });
    clock.advance(1_000);
    const [purged, kept] = await Promise.all([
      Promise.all(Array.from({ length: 20 }, () => dc.get("/lapsed/purged"))),
      Promise.all(Array.from({ length: 20 }, () => dc.get("/lapsed/kept"))),
    ]);
    expect(reads.snapshot).toBe(2);
    for (const answer of purged) {
      expect(answer.body).toBe("/lapsed/purged #3");
      expect(answer.cacheStatus).toMatch(/fwd=uri-miss/);
    }
    for (const answer of kept) {
      expect(answer.body).toBe("/lapsed/kept #2");
      expect(answer.cacheStatus).toMatch(/^herdless; hit; /);
    }
    expect(await origin.count()).toBe(3);
  });

  it("a read of the list that fails once does not pass the old copy off as new: a purge that returned before the failure is honoured by the next request", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const { origin, reads, clock, dc } = await countedDataCenter();
    expect((await dc.get("/flaky/purged")).cacheStatus).toMatch(/fwd=uri-miss/);
    expect((await dc.get("/flaky/other")).cacheStatus).toMatch(/fwd=uri-miss/);
    // The operator purges (elsewhere); the purge returns once its bound has passed.
    await env.PURGES.get(env.PURGES.idFromName("global")).purge({ urls: [`${EDGE}/flaky/purged`] });
    clock.advance(1_000);
    // This isolate's next read of the list fails (the runtime aborted it): that request is
    // served with the copy the isolate has, the registry being out of reach for it.
    reads.failNext = 1;
    expect((await dc.get("/flaky/other")).cacheStatus).toMatch(/^herdless; hit; /);
    // The failed read made the old copy no younger: the next request reads the list again.
    const visitor = await dc.get("/flaky/purged");
    expect(visitor.cacheStatus).toMatch(/fwd=uri-miss/);
    expect(visitor.body).toBe("/flaky/purged #3");
    expect(reads.snapshot).toBe(2);
    expect(await origin.count()).toBe(3);
    expect(warn.mock.calls.filter(([line]) => String(line).includes("purge registry unavailable"))).toHaveLength(1);
  });

  it("when the registry object cannot be reached, the edge keeps serving (one warning) and a purge answers 503", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => undefined);
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const { namespace } = purgesNamespace("down");
    const [dc] = dataCenters(
      1,
      { ...edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN, purgePropagationMs: 10 } }), PURGES: namespace },
      undefined,
      { ownIsolate: true },
    );
    expect((await dc!.get("/steady")).cacheStatus).toMatch(/fwd=uri-miss/);
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect((await dc!.get("/steady")).cacheStatus).toMatch(/^herdless; hit; /);
    }
    const purge = await adminCall(dc!, "POST", "purge", { body: { urls: [`${EDGE}/steady`] } });
    expect(purge.status).toBe(503);
    expect(JSON.parse(purge.body)).toEqual({ error: "herdless admin: Durable Object unreachable (simulated)" });
    expect(await origin.count()).toBe(1);
    const warnings = warn.mock.calls
      .map(([line]) => String(line))
      .filter((line) => line.includes("purge registry unavailable"));
    expect(warnings).toHaveLength(1);
  });
});

describe("the registry object", () => {
  it("reads its storage once and keeps the list in memory: 5 reads and a purge cost 1 storage read, and the purge is in the next read", async () => {
    const stub = env.PURGES.get(env.PURGES.idFromName(`registry-${crypto.randomUUID()}`));
    const storageReads = await runInDurableObject(stub, async (object, state) => {
      const instance = object as unknown as PurgeRegistryObject;
      const get = vi.spyOn(state.storage, "get");
      for (let i = 0; i < 5; i++) expect(await instance.snapshot()).toEqual(emptyPurges());
      await instance.purge({ urls: [`${EDGE}/gone`] });
      const after = await instance.snapshot();
      expect(Object.keys(after.keys)).toHaveLength(1);
      return get.mock.calls.length;
    });
    expect(storageReads).toBe(1);
    // What a later instance reads back from storage is the same list.
    expect(Object.keys((await stub.snapshot()).keys)).toHaveLength(1);
  });
});

describe("the purge list's size", () => {
  it("48,000 URLs purged in 40 purges all land (the list stays one storage value under its limit), and the first is still purged", async () => {
    // An operator's CMS purges each page it edits: a month of that used to outgrow the one
    // storage value the registry keeps (SQLITE_TOOBIG), and every purge after it failed.
    const stub = env.PURGES.get(env.PURGES.idFromName(`registry-${crypto.randomUUID()}`));
    const url = (round: number, i: number) => `${EDGE}/product/${round}-${i}-xxxxxxxxxx`;
    const storedBefore = Date.now() - 1;
    for (let round = 0; round < 40; round++) {
      // Each call would throw (and the admin API answer 503) once the list outgrew its value.
      await stub.purge({ urls: Array.from({ length: 1_200 }, (_, i) => url(round, i)) });
    }
    const list = await stub.snapshot();
    const [first = ""] = purgeKeyOf(configFromEnv(env))(url(0, 0));
    // Folded into the purge of everything stored before the oldest marks kept: still purged.
    expect(list.keys[first]).toBeUndefined();
    expect(purgeVerdict(testEntry(first, storedBefore), first, list)).toBe("hard");
    expect(Object.keys(list.keys).filter((key) => key.includes("/product/39-"))).toHaveLength(1_200);
  });
});
