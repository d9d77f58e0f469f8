import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { countingCoordinator, dataCenter, dataCenters, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { largeBodyByte } from "./origin-protocol.ts";
import { testOrigin } from "./test-origin.ts";

describe("an isolate's requests for one key make one coordinator call at a time", () => {
  it("100 concurrent requests for a cold key: 1 coordinator call, 1 origin request, 100 × the same body", async () => {
    const origin = await testOrigin({ mode: "hold", headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const base = edgeEnv(origin.url);
    const { env, fills } = countingCoordinator(base);
    await useInCoordinators(base, ["/cold"], clock);
    const [dc] = dataCenters(1, env, clock, { ownIsolate: true });
    const pending = Promise.all(Array.from({ length: 100 }, () => dc!.get("/cold")));
    await origin.waitFor({ held: 1 });
    await origin.release();
    const answers = await pending;
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(new Set(answers.map((a) => a.body))).toEqual(new Set(["/cold #1"]));
    expect(answers.filter((a) => /collapsed/.test(a.cacheStatus))).toHaveLength(99);
    expect(fills()).toBe(1);
    expect(await origin.count()).toBe(1);
    // The entry is in the isolate's memory at once: the next request is a hit, no call at all.
    expect((await dc!.get("/cold")).cacheStatus).toMatch(/hit/);
    expect(fills()).toBe(1);
  });

  it("100 concurrent requests in a new isolate for a key its data center's cache holds: 100 hits, no coordinator call, the body stored by the other isolate", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const clock = new ManualClock(Date.now());
    const base = edgeEnv(origin.url);
    const { env, fills } = countingCoordinator(base);
    await useInCoordinators(base, ["/in-cache"], clock);
    const cacheName = `dc-${crypto.randomUUID()}`;
    const first = dataCenter(cacheName, env, clock, { isolate: `a-${cacheName}` });
    const stored = await first.get("/in-cache");
    expect(stored.cacheStatus).toMatch(/fwd=uri-miss/);
    // The Cache API write goes behind the answer.
    await stored.settled;
    const other = dataCenter(cacheName, env, clock, { isolate: `b-${cacheName}` });
    // The first looks the key up for its isolate; the others wait for it and are answered from memory.
    const answers = await Promise.all(Array.from({ length: 100 }, () => other.get("/in-cache")));
    expect(answers.filter((a) => a.status !== 200 || a.body !== "/in-cache #1")).toEqual([]);
    expect(answers.filter((a) => !/^herdless; hit; /.test(a.cacheStatus))).toEqual([]);
    expect(fills()).toBe(1);
    expect(await origin.count()).toBe(1);
  });

  it("50 concurrent requests for a cold key whose body streams (1 MB): 1 coordinator call, one RPC stream shared, 50 × the whole body, bytes before the origin finished", async () => {
    const bytes = 1_000_000;
    const origin = await testOrigin({ bodyBytes: bytes, mode: "half", headers: { "cache-control": "max-age=60" } });
    const base = edgeEnv(origin.url);
    const { env, fills } = countingCoordinator(base);
    const [dc] = dataCenters(1, env, undefined, { ownIsolate: true });
    const opened = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const { response } = await dc!.fetch("/streamed");
        const reader = response.body!.getReader();
        const first = await reader.read();
        return { response, reader, first: first.value ?? new Uint8Array() };
      }),
    );
    // Every request has bytes while the origin holds back the second half.
    expect(opened.filter((o) => o.response.status !== 200 || o.first.byteLength === 0)).toEqual([]);
    expect(await origin.stats()).toMatchObject({ count: 1, held: 1 });
    expect(fills()).toBe(1);
    await origin.release();
    const bodies = await Promise.all(
      opened.map(async ({ reader, first }) => {
        const chunks = [first];
        for (let read = await reader.read(); !read.done; read = await reader.read()) chunks.push(read.value);
        return new Uint8Array(await new Blob(chunks).arrayBuffer());
      }),
    );
    const want = Uint8Array.from({ length: bytes }, (_, i) => largeBodyByte(i));
    expect(bodies.filter((body) => body.byteLength !== bytes || !body.every((b, i) => b === want[i]))).toEqual([]);
    expect(opened.filter((o) => /collapsed/.test(o.response.headers.get("cache-status") ?? ""))).toHaveLength(49);
    expect(fills()).toBe(1);
    expect(await origin.count()).toBe(1);
  });

  it("100 concurrent requests for an expired key without stale-while-revalidate: 1 coordinator call, 1 revalidation", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=1" } });
    const clock = new ManualClock(Date.now());
    const base = edgeEnv(origin.url);
    const { env, fills } = countingCoordinator(base);
    await useInCoordinators(base, ["/expiring"], clock);
    const [dc] = dataCenters(1, env, clock, { ownIsolate: true });
    expect((await dc!.get("/expiring")).status).toBe(200);
    clock.advance(5_000);
    await origin.set({ mode: "hold" });
    const leader = dc!.get("/expiring");
    await origin.waitFor({ held: 1 });
    // The rest arrive while the isolate's call is at the origin: they wait on it, with no engine of their own.
    const waiters = Array.from({ length: 99 }, () => dc!.get("/expiring"));
    await origin.set({ mode: "up" });
    const answers = await Promise.all([leader, ...waiters]);
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(fills()).toBe(2);
    expect(await origin.count()).toBe(2);
    // One request led the call; the other 99 waited on it and say so (collapsed onto a fetch that went forward).
    const statuses = answers.map((a) => a.cacheStatus.replace(/; ttl=\d+/, ""));
    expect(statuses.filter((s) => s === "herdless; fwd=stale; fwd-status=200; collapsed")).toHaveLength(99);
    expect(new Set(answers.map((a) => a.body))).toEqual(new Set(["/expiring #2"]));
  });

  it("a request that must be validated (no-cache on a route that honours it) makes its own call", async () => {
    const origin = await testOrigin({ mode: "hold", headers: { "cache-control": "max-age=60" } });
    const base = edgeEnv(origin.url, { routes: [{ match: "*", honorRequestNoCache: true }] });
    const { env, fills } = countingCoordinator(base);
    const [dc] = dataCenters(1, env, undefined, { ownIsolate: true });
    const first = dc!.get("/validated");
    await origin.waitFor({ held: 1 });
    const validated = dc!.get("/validated", { headers: { "cache-control": "no-cache" } });
    await expect.poll(() => fills()).toBe(2);
    await origin.release();
    expect((await first).status).toBe(200);
    expect((await validated).status).toBe(200);
  });

  it.each(["no-cache", "max-age=0"])(
    "attack: a %s answer is its requester's alone: the requests that joined its call, in the isolate or another data center, ask the origin themselves",
    async (cacheControl) => {
      const path = `/api-${cacheControl.replace(/\W/g, "")}`;
      const origin = await testOrigin({ mode: "hold", headers: { "cache-control": cacheControl, etag: '"e"' } });
      const base = edgeEnv(origin.url);
      const dcs = dataCenters(2, base, undefined, { ownIsolate: true });
      const leader = dcs[0]!.get(path);
      await origin.waitFor({ held: 1 });
      const waiters = [dcs[0]!.get(path), dcs[0]!.get(path), dcs[1]!.get(path)];
      await origin.set({ mode: "up" });
      await origin.release();
      const answers = await Promise.all([leader, ...waiters]);
      expect((await answers[0]!).body).toBe(`${path} #1`);
      // Each waiter got an answer of its own, none the leader's.
      expect(new Set(answers.map((a) => a.body)).size).toBe(4);
      for (const waiter of answers.slice(1)) expect(waiter.cacheStatus).not.toMatch(/collapsed/);
      expect(await origin.count()).toBe(4);
    },
  );
});
