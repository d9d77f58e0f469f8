import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { backoffStoreConformance } from "../../src/core/guard/backoff-store-conformance.ts";
import type { BackoffStore } from "../../src/core/guard/key-backoff.ts";
import { DurableObjectBackoffStore } from "../../src/cloudflare/do-backoff-store.ts";

/** A store whose every call runs inside one object: storage may only be touched from the object's own I/O context. */
function storeInObject(name: string, clock: ManualClock) {
  const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(name));
  const inside = <T>(fn: (store: DurableObjectBackoffStore) => T | Promise<T>) =>
    runInDurableObject(stub, (_instance, state) => fn(new DurableObjectBackoffStore(state.storage, clock)));
  return {
    get: (key) => inside((s) => s.get(key)),
    set: (key, record) => inside((s) => s.set(key, record)),
    delete: (key) => inside((s) => s.delete(key)),
    deleteForgotten: () => inside((s) => s.deleteForgotten()),
    nextForgetAt: () => inside((s) => s.nextForgetAt()),
  } satisfies BackoffStore & Record<string, unknown>;
}

backoffStoreConformance("Durable Object storage", async () => {
  const clock = new ManualClock(1_000_000);
  return { clock, store: storeInObject(`backoff-${crypto.randomUUID()}`, clock) };
});

describe("DurableObjectBackoffStore upkeep", () => {
  it("a key gone quiet keeps no storage once the cleanup alarm ran", async () => {
    const clock = new ManualClock(1_000);
    const store = storeInObject(`backoff-${crypto.randomUUID()}`, clock);
    await store.set("a", { v: 1, failures: 1, until: 2_000, forgetAt: 5_000 });
    await store.set("b", { v: 1, failures: 2, until: 3_000, forgetAt: 9_000 });
    expect(await store.nextForgetAt()).toBe(5_000);
    clock.set(5_000);
    await store.deleteForgotten();
    expect(await store.nextForgetAt()).toBe(9_000);
    clock.set(9_000);
    await store.deleteForgotten();
    expect(await store.nextForgetAt()).toBeUndefined();
  });
});
