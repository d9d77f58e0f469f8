import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import type { Env } from "../../src/cloudflare/env.ts";
import { dataCenters, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const BINDINGS = ["COORDINATOR", "GUARD", "PURGES", "STATS"] as const;

/**
 * The test's env with every Durable Object call counted (`"PURGES.snapshot": 2`), and the
 * registry's snapshot() held back while `holdPurgeReads` is set, until `release()`.
 */
function countedEnv(base: Env) {
  const calls: Record<string, number> = {};
  const held: Array<() => void> = [];
  const control = { holdPurgeReads: false, release: () => held.splice(0).forEach((go) => go()) };
  const counted = { ...base };
  for (const binding of BINDINGS) {
    const real = base[binding];
    if (real === undefined) continue;
    const namespace = new Proxy(real, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property);
        if (property !== "get" || typeof value !== "function")
          return typeof value === "function" ? value.bind(target) : value;
        return (...args: unknown[]) => {
          const stub = Reflect.apply(value, target, args) as object;
          return new Proxy(stub, {
            get(stubTarget, method) {
              const call: unknown = Reflect.get(stubTarget, method);
              // `then` stays what it is: an awaited stub must not look thenable.
              if (typeof method !== "string" || method === "then" || typeof call !== "function") return call;
              return async (...callArgs: unknown[]) => {
                const name = `${binding}.${method}`;
                calls[name] = (calls[name] ?? 0) + 1;
                if (name === "PURGES.snapshot" && control.holdPurgeReads)
                  await new Promise<void>((resolve) => held.push(resolve));
                return Reflect.apply(call, stubTarget, callArgs) as unknown;
              };
            },
          });
        };
      },
    });
    Object.assign(counted, { [binding]: namespace });
  }
  return { env: counted, calls, control };
}

/** Counts every Cache API operation (`"match": 1`) from now on. */
function countCacheApi(): Record<string, number> {
  const ops: Record<string, number> = {};
  const open = caches.open.bind(caches);
  vi.spyOn(caches, "open").mockImplementation(async (name: string) => {
    const cache = await open(name);
    return new Proxy(cache, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          ops[String(property)] = (ops[String(property)] ?? 0) + 1;
          return Reflect.apply(value, target, args) as unknown;
        };
      },
    });
  });
  return ops;
}

const clear = (counts: Record<string, number>) => Object.keys(counts).forEach((key) => delete counts[key]);

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a hit in a warm isolate", () => {
  it("1,000 hits on a warm key after the purge copy is read: 0 Durable Object requests, 0 Cache API calls; one cache.match a second after", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const { env: testEnv, calls } = countedEnv(edgeEnv(origin.url, { admin: { purgePropagationMs: 1_000 } }));
    const ops = countCacheApi();
    const clock = new ManualClock(Date.now());
    const [dc] = dataCenters(1, testEnv, clock, { ownIsolate: true, statsObject: crypto.randomUUID() });
    const first = await dc!.get("/warm");
    expect(first.cacheStatus).toMatch(/fwd=uri-miss/);
    await first.settled;
    clear(calls);
    clear(ops);
    for (let i = 0; i < 1_000; i++) {
      clock.advance(0.5);
      const hit = await dc!.get("/warm");
      expect(hit.cacheStatus).toMatch(/^herdless; hit; /);
      await hit.settled;
    }
    expect(calls).toEqual({});
    expect(ops).toEqual({});
    expect(await origin.count()).toBe(1);
    // Past admin.purgePropagationMs the isolate reads the page from the data center's Cache API
    // again (another isolate's invalidation lands there), once, behind a hit, as it renews its
    // copy of the purge list.
    for (let i = 0; i < 1_000; i++) {
      clock.advance(0.5);
      const hit = await dc!.get("/warm");
      expect(hit.cacheStatus).toMatch(/^herdless; hit; /);
      await hit.settled;
    }
    // The purge list's renewal: one registry read, its copy's cache.match and put. And the page's one cache.match.
    expect(calls).toEqual({ "PURGES.snapshot": 1 });
    expect(ops).toEqual({ match: 2, put: 1 });
  });

  it("when the purge copy is due, hits answer from memory while the registry is read behind them, once; past the bound a request waits for the read", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const { env: testEnv, calls, control } = countedEnv(edgeEnv(origin.url, { admin: { purgePropagationMs: 1_000 } }));
    const clock = new ManualClock(Date.now());
    const [dc] = dataCenters(1, testEnv, clock, { ownIsolate: true, statsObject: crypto.randomUUID() });
    await (
      await dc!.get("/due")
    ).settled;
    expect(calls["PURGES.snapshot"]).toBe(1);
    // 800 ms into a 1 s bound: due. The registry does not answer until released, and the hits do not wait.
    clock.advance(800);
    control.holdPurgeReads = true;
    const hits = [await dc!.get("/due")];
    await vi.waitFor(() => expect(calls["PURGES.snapshot"]).toBe(2));
    for (let i = 0; i < 20; i++) hits.push(await dc!.get("/due"));
    for (const hit of hits) expect(hit.cacheStatus).toMatch(/^herdless; hit; /);
    expect(calls["PURGES.snapshot"]).toBe(2);
    control.release();
    control.holdPurgeReads = false;
    await Promise.all(hits.map((hit) => hit.settled));
    // Renewed at 800 ms, valid until 1.8 s: at 1.7 s a hit, no read (and one more renewal behind it).
    clock.advance(900);
    expect((await dc!.get("/due")).cacheStatus).toMatch(/^herdless; hit; /);
    await vi.waitFor(() => expect(calls["PURGES.snapshot"]).toBe(3));
    // Past the bound of every copy, with no traffic meanwhile: the next request waits for a read.
    clock.advance(2_000);
    control.holdPurgeReads = true;
    let answered = false;
    const waiting = dc!.get("/due").then((answer) => ((answered = true), answer));
    await vi.waitFor(() => expect(calls["PURGES.snapshot"]).toBe(4));
    expect(answered).toBe(false);
    control.release();
    expect((await waiting).cacheStatus).toMatch(/^herdless; hit; /);
    expect(await origin.count()).toBe(1);
  });

  it("a hit's headers changed by whoever holds the response never reach the next hit", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url), undefined, { ownIsolate: true });
    await (
      await dc!.get("/own-headers")
    ).settled;
    const { response } = await dc!.fetch("/own-headers");
    expect(response.headers.get("cache-status")).toMatch(/^herdless; hit; /);
    response.headers.set("x-injected", "1");
    response.headers.delete("cache-control");
    await response.body?.cancel();
    const next = await dc!.get("/own-headers");
    expect(next.cacheStatus).toMatch(/^herdless; hit; /);
    expect(next.headers.get("x-injected")).toBeNull();
    expect(next.headers.get("cache-control")).toBe("max-age=600");
  });
});
