import { configureForTest } from "./in-object.ts";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { HerdlessError, isHerdlessError } from "../../src/core/errors.ts";
import type { Timers } from "../../src/core/guard/local-guard.ts";
import { DurableObjectGuard } from "../../src/cloudflare/do-guard.ts";
import { guardTestHooks, type GuardGrant, type OriginGuardObject } from "../../src/cloudflare/origin-guard-object.ts";

type StubMethods = Pick<OriginGuardObject, "acquire" | "release" | "abandon" | "renew" | "snapshot">;

/** A namespace whose every stub is made by `makeStub`; counts the stubs it hands out. */
function fakeNamespace(makeStub: () => Partial<StubMethods>) {
  const made = { stubs: 0 };
  const namespace = {
    idFromName: (name: string) => ({ name }),
    get: () => {
      made.stubs++;
      return makeStub();
    },
  } as unknown as DurableObjectNamespace<OriginGuardObject>;
  return { namespace, made };
}

const unreachable = () => Promise.reject(new Error("Network connection lost."));

async function failure(promise: Promise<unknown>): Promise<HerdlessError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isHerdlessError(error)) throw new Error(`expected a HerdlessError, got ${String(error)}`);
  return error;
}

/** Timers that fire only when told. */
function manualTimers() {
  const pending = new Set<() => void>();
  const timers: Timers = {
    setTimeout: (fn) => {
      pending.add(fn);
      return fn;
    },
    clearTimeout: (handle) => pending.delete(handle as () => void),
  };
  return {
    timers,
    fireAll: () => [...pending].forEach((fn) => (pending.delete(fn), fn())),
    pending: () => pending.size,
  };
}

/** A real guard object of its own, configured like the origin-guard tests (and with `clock`, its permits' time). */
async function realGuard(origin: { maxConcurrency: number; maxQueue?: number }, clock?: ManualClock) {
  const name = `chaos-${crypto.randomUUID()}`;
  const stub = () => env.GUARD.get(env.GUARD.idFromName(name));
  const config = parseConfig({ origin: { url: "http://origin.test", queueTimeoutMs: 20_000, ...origin } });
  await configureForTest(stub(), (instance: OriginGuardObject) =>
    instance[guardTestHooks]({ config, ...(clock ? { clock } : {}) }),
  );
  return { name, stub };
}

/** A permit's lease in the guard object with the default origin.timeoutMs (10 s) + 5 s. */
const LEASE_MS = 15_000;

describe("DurableObjectGuard when the guard object fails", () => {
  it("rejects with COORDINATOR_UNAVAILABLE when every call to the object throws, after one retry on a fresh stub", async () => {
    const { namespace, made } = fakeNamespace(() => ({ acquire: unreachable, snapshot: unreachable }));
    const guard = new DurableObjectGuard(namespace);
    const error = await failure(guard.acquire("foreground"));
    expect(error.code).toBe("COORDINATOR_UNAVAILABLE");
    expect(error.message).toMatch(/origin guard "global" unavailable \(acquire\): Network connection lost/);
    expect((error.cause as Error).message).toBe("Network connection lost.");
    expect(made.stubs).toBe(2);
    expect((await failure(guard.snapshot())).code).toBe("COORDINATOR_UNAVAILABLE");
  });

  it("rejects with COORDINATOR_UNAVAILABLE when the namespace cannot even make a stub", async () => {
    const namespace = {
      idFromName: () => {
        throw new TypeError("Durable Object namespace binding is broken");
      },
    } as unknown as DurableObjectNamespace<OriginGuardObject>;
    const error = await failure(new DurableObjectGuard(namespace, "global").acquire("background"));
    expect(error.code).toBe("COORDINATOR_UNAVAILABLE");
    expect(error.cause).toBeInstanceOf(TypeError);
  });

  it("does not repeat a call the object refused as overloaded", async () => {
    const overloaded = () =>
      Promise.reject(Object.assign(new Error("Durable Object is overloaded."), { overloaded: true }));
    const { namespace, made } = fakeNamespace(() => ({ acquire: overloaded }));
    expect((await failure(new DurableObjectGuard(namespace).acquire("foreground"))).code).toBe(
      "COORDINATOR_UNAVAILABLE",
    );
    expect(made.stubs).toBe(1);
  });

  it("maps refusals to their codes with retryAfterMs, and never rejects a release it cannot deliver", async () => {
    let calls = 0;
    const grants: GuardGrant[] = [
      { ok: false, code: "BREAKER_OPEN", message: "origin circuit breaker is open", retryAfterMs: 4_000 },
      { ok: true, permitId: "p1", probe: false, leaseMs: 15_000 },
    ];
    const { namespace } = fakeNamespace(() => ({ acquire: async () => grants[calls++]!, release: unreachable }));
    const guard = new DurableObjectGuard(namespace);
    const refused = await failure(guard.acquire("foreground"));
    expect({ code: refused.code, retryAfterMs: refused.retryAfterMs }).toEqual({
      code: "BREAKER_OPEN",
      retryAfterMs: 4_000,
    });
    const permit = await guard.acquire("foreground");
    await expect(permit.release("success")).resolves.toBeUndefined();
  });

  it("gives up on a hung object after waitTimeoutMs and hands back the permit that comes later", async () => {
    let grant: (g: GuardGrant) => void = () => undefined;
    const abandoned: string[] = [];
    const { namespace } = fakeNamespace(() => ({
      acquire: () => new Promise<GuardGrant>((resolve) => (grant = resolve)),
      abandon: async (id: string) => void abandoned.push(id),
    }));
    const { timers, fireAll } = manualTimers();
    const guard = new DurableObjectGuard(namespace, "global", { waitTimeoutMs: 25_000, timers });
    const pending = failure(guard.acquire("foreground"));
    fireAll();
    const error = await pending;
    expect(error.code).toBe("COORDINATOR_UNAVAILABLE");
    expect(error.message).toMatch(/did not answer within 25000 ms/);
    grant({ ok: true, permitId: "late", probe: false, leaseMs: 15_000 });
    await expect.poll(() => abandoned).toEqual(["late"]);
  });

  it("retries once on a fresh stub, as after an object reset (a stub that saw it stays broken)", async () => {
    const { namespace, made } = fakeNamespace(() =>
      made.stubs === 1
        ? { acquire: unreachable }
        : { acquire: async (): Promise<GuardGrant> => ({ ok: true, permitId: "p", probe: true, leaseMs: 15_000 }) },
    );
    const permit = await new DurableObjectGuard(namespace).acquire("foreground");
    expect({ permitId: permit.permitId, probe: permit.probe }).toEqual({ permitId: "p", probe: true });
    expect(made.stubs).toBe(2);
  });

  it("honours an abort while waiting (the signal cannot cross RPC) and hands back the permit granted afterwards", async () => {
    const g = await realGuard({ maxConcurrency: 1, maxQueue: 5 });
    const holder = await new DurableObjectGuard(env.GUARD, g.name).acquire("foreground");
    const abort = new AbortController();
    const waiting = new DurableObjectGuard(env.GUARD, g.name)
      .acquire("foreground", abort.signal)
      .catch((e: unknown) => e);
    await expect.poll(async () => (await g.stub().snapshot()).queued).toBe(1);
    abort.abort(new Error("client went away"));
    expect(((await waiting) as Error).message).toBe("client went away");
    await holder.release("success");
    // The object granted the slot to the gone waiter; its edge gives it back uncounted.
    await expect.poll(async () => (await g.stub().snapshot()).inFlight).toBe(0);
  });
});

describe("a permit is held while its origin call runs, and only then", () => {
  it("attack: a streamed body held past the permit's lease keeps its slot (renewed); nobody else gets it until it is released", async () => {
    const clock = new ManualClock(Date.now());
    const g = await realGuard({ maxConcurrency: 1, maxQueue: 0 }, clock);
    const { timers, fireAll, pending } = manualTimers();
    const holder = new DurableObjectGuard(env.GUARD, g.name, { timers, clock });
    const permit = await holder.acquire("foreground");
    // Four thirds of a lease and more pass while the holder's body still streams; each third it renews.
    for (let third = 1; third <= 5; third++) {
      clock.advance(LEASE_MS / 3);
      fireAll();
      await expect.poll(pending).toBe(1);
    }
    expect(permit.lost?.aborted).toBe(false);
    // The attacker's call comes 25 s after the grant (the lease alone would have ended at 15 s).
    const attacker = await failure(new DurableObjectGuard(env.GUARD, g.name).acquire("foreground"));
    expect(attacker.code).toBe("QUEUE_FULL");
    expect((await g.stub().snapshot()).inFlight).toBe(1);
    await permit.release("success");
    expect(pending()).toBe(0);
    const next = await new DurableObjectGuard(env.GUARD, g.name).acquire("foreground");
    await next.release("success");
  });

  it("a holder that was not heard from for a lease loses its permit: the object gives the slot on, and the holder's `lost` aborts at its next renewal", async () => {
    const clock = new ManualClock(Date.now());
    const g = await realGuard({ maxConcurrency: 1, maxQueue: 0 }, clock);
    const { timers, fireAll } = manualTimers();
    const permit = await new DurableObjectGuard(env.GUARD, g.name, { timers, clock }).acquire("foreground");
    clock.advance(LEASE_MS);
    const other = await new DurableObjectGuard(env.GUARD, g.name).acquire("foreground");
    fireAll();
    await expect.poll(() => permit.lost?.aborted).toBe(true);
    expect(String((permit.lost?.reason as Error).message)).toMatch(/origin permit lost: .* no longer holds it/);
    await other.release("success");
  });

  it("a holder cut off from the guard object stops its call after two thirds of a lease, before the object could end the lease", async () => {
    const clock = new ManualClock(0);
    const renewals: string[] = [];
    const { namespace } = fakeNamespace(() => ({
      acquire: async (): Promise<GuardGrant> => ({ ok: true, permitId: "p", probe: false, leaseMs: LEASE_MS }),
      renew: (id: string) => (renewals.push(id), unreachable()),
    }));
    const { timers, fireAll } = manualTimers();
    const permit = await new DurableObjectGuard(namespace, "global", { timers, clock }).acquire("foreground");
    clock.advance(LEASE_MS / 3);
    fireAll();
    await expect.poll(() => renewals.length).toBe(2);
    expect(permit.lost?.aborted).toBe(false);
    clock.advance(LEASE_MS / 3);
    fireAll();
    await expect.poll(() => permit.lost?.aborted).toBe(true);
    expect(String((permit.lost?.reason as Error).message)).toMatch(/not reached for 10000 ms/);
  });
});
