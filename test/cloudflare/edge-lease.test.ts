import { abortAllDurableObjects, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ManualClock, systemClock } from "../../src/core/clock.ts";
import { testEntry } from "../../src/core/store/store-conformance.ts";
import { DurableObjectStore } from "../../src/cloudflare/do-store.ts";
import { StorageLeaseManager } from "../../src/cloudflare/storage-lease.ts";
import { coordinatorOf, dataCenter, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

// The lease and origin timers inside the key coordinator run on real time, so these tests use
// short ones and wait for outcomes (counts, aborts), never for durations. The config
// requires the lease to outlive the origin timeout; the second between them is the margin a
// loaded machine needs (with 100 ms the object's 504 reached the edge after its wait ended: a 502).
// The key's backoff is off: a fill right after a failed one must reach the origin here.
const LIMITS = { origin: { timeoutMs: 500 }, coordinator: { lockLeaseMs: 1_500 }, breaker: { backoffBaseMs: 0 } };

describe("a lease never wedges a key", () => {
  it("an origin call that hangs is aborted within the lease, and the next fill goes through", async () => {
    const origin = await testOrigin({ mode: "hold" });
    const testEnv = edgeEnv(origin.url, LIMITS);
    await useInCoordinators(testEnv, ["/hang"], systemClock);
    const dc = dataCenter(`lease-${crypto.randomUUID()}`, testEnv);

    const hung = dc.get("/hang");
    await origin.waitFor({ held: 1 });
    const answer = await hung;
    expect(answer.status).toBe(504);
    expect(answer.body).toMatch(/did not answer .*\/hang within 500 ms/);
    await expect.poll(async () => (await origin.stats()).aborted).toBe(1);

    await origin.set({ mode: "up" });
    const next = await dc.get("/hang");
    expect(next).toMatchObject({ status: 200, body: "/hang #2" });
    expect(await origin.count()).toBe(2);
  });

  it("a holder that died with the lease (object reset) blocks the key only until the lease expires", async () => {
    const origin = await testOrigin();
    const testEnv = edgeEnv(origin.url);
    const stub = coordinatorOf(testEnv, "/orphaned");
    const key = "GET https://edge.test/orphaned";
    // The holder took the lease, then its object was reset before it could release it.
    const dead = await runInDurableObject(stub, (_instance, state) =>
      new StorageLeaseManager(state.storage, systemClock).acquire(key, LIMITS.coordinator.lockLeaseMs),
    );
    await abortAllDurableObjects();

    const answer = await dataCenter(`orphan-${crypto.randomUUID()}`, testEnv).get("/orphaned");
    expect(answer).toMatchObject({ status: 200, body: "/orphaned #1" });
    expect(await origin.count()).toBe(1);
    const stored = await runInDurableObject(coordinatorOf(testEnv, "/orphaned"), (_instance, state) =>
      new DurableObjectStore(state.storage, systemClock).get(key),
    );
    // The fill asked the origin only once the dead holder's lease had expired, under a newer token.
    expect(stored!.requestAt).toBeGreaterThanOrEqual(dead!.expiresAt);
    expect(stored!.token).toBeGreaterThan(dead!.token);
  });
});

describe("fencing: a late writer with an older token never replaces a newer entry", () => {
  it("the object's store refuses the older token", async () => {
    const origin = await testOrigin();
    const testEnv = edgeEnv(origin.url);
    const clock = new ManualClock(Date.now());
    const key = "GET https://edge.test/fenced-store";
    const results = await runInDurableObject(coordinatorOf(testEnv, "/fenced-store"), async (_instance, state) => {
      const store = new DurableObjectStore(state.storage, clock);
      const newer = await store.put(
        testEntry(key, clock.now(), { token: 10, body: new TextEncoder().encode("newer") }),
      );
      const older = await store.put(testEntry(key, clock.now(), { token: 9, body: new TextEncoder().encode("older") }));
      return { newer, older, kept: new TextDecoder().decode((await store.get(key))?.body) };
    });
    expect(results).toEqual({ newer: true, older: false, kept: "newer" });
  });

  it("a fill whose lease token is older than the stored entry's is discarded, and the coordinator serves the newer entry", async () => {
    const origin = await testOrigin();
    const testEnv = edgeEnv(origin.url);
    const clock = new ManualClock(Date.now());
    const stub = coordinatorOf(testEnv, "/fenced");
    // Written under a lease newer than any this object will issue, and already stale, so
    // the next fill goes to the origin and tries to write with its own, older token.
    const newerToken = Date.now() + 1e9;
    await runInDurableObject(stub, async (_instance, state) => {
      const entry = testEntry("GET https://edge.test/fenced", clock.now() - 20_000, {
        token: newerToken,
        body: new TextEncoder().encode("newer"),
        staleAt: clock.now() - 1_000,
        swrUntil: clock.now() - 1_000,
        sieUntil: clock.now() + 60_000,
        deleteAt: clock.now() + 3_600_000,
      });
      await new DurableObjectStore(state.storage, clock).put(entry);
    });
    // After the write made behind its back: the object's parts list its tables when built.
    await useInCoordinators(testEnv, ["/fenced"], clock);

    const answer = await dataCenter(`fence-${crypto.randomUUID()}`, testEnv, clock).get("/fenced");
    expect(await origin.count()).toBe(1);
    expect(answer).toMatchObject({ status: 200, body: "newer" });
    const kept = await runInDurableObject(
      stub,
      async (_instance, state) =>
        (await new DurableObjectStore(state.storage, clock).get("GET https://edge.test/fenced"))?.token,
    );
    expect(kept).toBe(newerToken);
  });
});
