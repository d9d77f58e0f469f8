/**
 * What a fill costs on a shared store (Redis for a fleet): how many round trips its answer
 * waits for, and how many calls it makes. Each store, lease, backoff and announcement call
 * goes over {@link Network}, which runs the call when it is sent and hands every reply in
 * flight back at once: one round trip, as one pipelined Redis connection does. The origin
 * is one round trip too.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { parseConfig, type ConfigInput } from "../config.ts";
import { KeyCoordinator, type KeyCoordinatorOptions } from "./key-coordinator.ts";
import type { FillRequest, FillResult } from "./coordinator.ts";
import type { Lease, LeaseManager } from "./lease.ts";
import { MemoryLeaseManager } from "./memory-lease.ts";
import type { FillHeard } from "./relay.ts";
import { LocalGuard } from "../guard/local-guard.ts";
import { MemoryBackoffStore, type BackoffRecord, type BackoffStore } from "../guard/key-backoff.ts";
import type { Store } from "../store/store.ts";
import { LruStore } from "../store/lru-store.ts";
import { testEntry } from "../store/store-conformance.ts";
import type { OriginGuard } from "../guard/origin-guard.ts";

class Network {
  private replies: Array<() => void> = [];
  /** Every call sent, by name, in order. */
  readonly sent: string[] = [];

  /** Sends `call` now; its reply comes back with the next round trip. */
  send<T>(name: string, call: () => Promise<T> | T): Promise<T> {
    this.sent.push(name);
    const result = Promise.resolve().then(call);
    return new Promise<T>((resolve, reject) => this.replies.push(() => result.then(resolve, reject)));
  }

  /** Hands back every reply in flight; false when nothing was in flight. */
  roundTrip(): boolean {
    const replies = this.replies.splice(0);
    for (const reply of replies) reply();
    return replies.length > 0;
  }

  /**
   * The next round trip once the work in flight sent it, turning the event loop meanwhile: the
   * digest of a request's fields (asked-by.ts) is hashed off the loop and comes a few turns
   * late. `done` when `isDone` holds first; `stuck` when nothing is sent for many turns.
   */
  async next(isDone: () => boolean): Promise<"trip" | "done" | "stuck"> {
    for (let turn = 0; turn < 10_000; turn++) {
      if (isDone()) return "done";
      if (this.roundTrip()) return "trip";
      await settle();
    }
    return "stuck";
  }

  count(name: string): number {
    return this.sent.filter((sent) => sent === name).length;
  }
}

/** Lets every callback that is ready run (no time passes: the clock is the test's). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A fleet's lease manager after Redis lost its data: every origin permit had to wait
 * (OriginPermit.waited), and `holds` says whether a lease is still its flight's.
 */
interface AfterLoss {
  holds: (lease: Lease) => boolean | Promise<boolean>;
}

function setup(overrides: Partial<ConfigInput> = {}, readsFollowAcquire = false, afterLoss?: AfterLoss) {
  const clock = new ManualClock(1_900_000_000_000);
  const config = parseConfig({ origin: { url: "http://origin.test" }, ...overrides });
  const net = new Network();
  const entries = new LruStore({ maxBytes: 1 << 20, clock });
  const store: Store = {
    get: (key) => net.send("entry read", () => entries.get(key)),
    put: (entry) => net.send("entry write", () => entries.put(entry)),
    delete: (key) => net.send("entry delete", () => entries.delete(key)),
  };
  const memoryLeases = new MemoryLeaseManager(clock);
  const leases: LeaseManager = {
    acquire: (key, ttlMs) => net.send("lease acquire", () => memoryLeases.acquire(key, ttlMs)),
    extend: (lease: Lease, ttlMs) => net.send("lease extend", () => memoryLeases.extend(lease, ttlMs)),
    release: (lease: Lease) => net.send("lease release", () => memoryLeases.release(lease)),
    ...(afterLoss ? { holds: (lease: Lease) => net.send("lease holds", () => afterLoss.holds(lease)) } : {}),
  };
  const records = new MemoryBackoffStore(clock);
  const backoff: BackoffStore = {
    get: (key) => net.send("backoff read", () => records.get(key)),
    set: (key, record: BackoffRecord) => net.send("backoff write", () => records.set(key, record)),
    delete: (key) => net.send("backoff delete", () => records.delete(key)),
  };
  const origin = { calls: 0, cacheControl: "max-age=60", status: 200 };
  const announced: string[] = [];
  const guard = (): OriginGuard => {
    const local = new LocalGuard({ config, clock });
    if (!afterLoss) return local;
    const acquire: OriginGuard["acquire"] = async (...args) => {
      const permit = await local.acquire(...args);
      return { release: (outcome, key) => permit.release(outcome, key), waited: true };
    };
    return { acquire, snapshot: () => local.snapshot() };
  };
  const pending: Promise<unknown>[] = [];
  // Another process's waiters on a key, told when the announcement's round trip comes back (a publish reaches them through Redis).
  const waiting = new Map<string, Array<(heard: FillHeard) => void>>();
  const options: KeyCoordinatorOptions = {
    config,
    clock,
    store,
    leases,
    backoff,
    guard: guard(),
    fetch: () =>
      net.send("origin", () => {
        origin.calls++;
        return new Response(`v${origin.calls}`, {
          status: origin.status,
          headers: { "cache-control": origin.cacheControl },
        });
      }),
    announceFill: (key, message, stored) =>
      net
        .send("announce", () => void announced.push(message))
        .then(() => {
          for (const hear of waiting.get(key) ?? []) hear({ message, ...(stored ? { entry: stored } : {}) });
          waiting.delete(key);
        }),
    background: (work) => void pending.push(work),
    readsFollowAcquire,
  };
  const coordinator = new KeyCoordinator(options);
  /** A coordinator in another process over the same store and leases: it waits on the announcement of a flight it does not hold. */
  const peer = new KeyCoordinator({
    ...options,
    guard: guard(),
    waitForFill: (key) =>
      net
        .send("subscribe", () => undefined)
        .then(() => new Promise<FillHeard>((hear) => waiting.set(key, [...(waiting.get(key) ?? []), hear]))),
  });

  /**
   * One fill: the round trips until its answer, then those of the work behind it. Each
   * round trip answers every call in flight, so calls made side by side count once.
   */
  const fill = async (request: Partial<FillRequest> = {}) => {
    let answer: FillResult | undefined;
    const filling = coordinator.fill({ ...pageRequest, ...request }).then((result) => (answer = result));
    let before = 0;
    for (await settle(); answer === undefined; await settle()) {
      const next = await net.next(() => answer !== undefined);
      if (next === "stuck") throw new Error("the fill waits for nothing in flight");
      if (next === "trip") before++;
    }
    await filling;
    let behind = 0;
    for (await settle(); net.roundTrip(); await settle()) behind++;
    await Promise.all(pending.splice(0));
    return { answer, before, behind };
  };
  /** `n` fills at once; resolves once all are answered and the work behind them is done. */
  const fillsAtOnce = async (n: number) => {
    const answers: FillResult[] = [];
    for (let i = 0; i < n; i++) void coordinator.fill(pageRequest).then((result) => answers.push(result));
    for (await settle(); answers.length < n; await settle())
      if ((await net.next(() => answers.length >= n)) === "stuck")
        throw new Error("the fills wait for nothing in flight");
    for (await settle(); net.roundTrip(); await settle());
    await Promise.all(pending.splice(0));
    return answers;
  };
  /** A fill in this process and one in the peer at once: the round trip after which each was answered. */
  const fillInBoth = async () => {
    const answeredAt: number[] = [];
    const answers: FillResult[] = [];
    let trips = 0;
    [coordinator, peer].forEach(
      (c, i) =>
        void c.fill(pageRequest).then((result) => {
          answers[i] = result;
          answeredAt[i] = trips;
        }),
    );
    const both = () => answeredAt.filter((at) => at !== undefined).length >= 2;
    for (await settle(); !both(); await settle()) {
      const next = await net.next(both);
      if (next === "stuck") throw new Error("the fills wait for nothing in flight");
      if (next === "trip") trips++;
    }
    for (await settle(); net.roundTrip(); await settle());
    await Promise.all(pending.splice(0));
    return { answers, answeredAt };
  };
  /** One fill, then `n` more once its flight runs (its look answered); resolves once all are answered, with the round trips it took. */
  const fillsJoining = async (n: number) => {
    const answers: FillResult[] = [];
    void coordinator.fill(pageRequest).then((result) => answers.push(result));
    await settle();
    net.roundTrip();
    await settle();
    for (let i = 0; i < n; i++) void coordinator.fill(pageRequest).then((result) => answers.push(result));
    let trips = 1;
    const answeredAt: number[] = [];
    for (await settle(); answers.length < n + 1; await settle()) {
      const next = await net.next(() => answers.length >= n + 1);
      if (next === "stuck") throw new Error("the fills wait for nothing in flight");
      if (next === "done") break;
      trips++;
      await settle();
      answeredAt.push(answers.length);
    }
    for (await settle(); net.roundTrip(); await settle());
    await Promise.all(pending.splice(0));
    return { answers, trips, answeredAt };
  };
  return {
    ...{ clock, net, origin, announced, records, fill, fillsAtOnce, fillInBoth, fillsJoining },
    ...{ peer, entries, memoryLeases, announceFill: options.announceFill! },
  };
}

const key = "GET https://site.test/page";
const pageRequest: FillRequest = {
  primary: key,
  key,
  url: "http://origin.test/page",
  path: "/page",
  headers: [],
  priority: "foreground",
};

describe("a fill's round trips to the shared store", () => {
  it("a cold miss answers after 5 round trips (entry and backoff side by side, twice; the origin; the entry's write); the lease's release and the announcement follow the answer, side by side", async () => {
    const t = setup();
    const { answer, before, behind } = await t.fill();
    expect(answer).toMatchObject({ kind: "entry", fwdStatus: 200, stored: true });
    expect(t.origin.calls).toBe(1);
    expect(before).toBe(5);
    expect(t.net.sent).toEqual([
      "entry read",
      "backoff read",
      "lease acquire",
      "entry read",
      "backoff read",
      "origin",
      "entry write",
      "lease release",
      "announce",
    ]);
    expect(behind).toBe(1);
    expect(t.announced).toEqual([`done:${(answer as Extract<FillResult, { kind: "entry" }>).entry.token}`]);
  });

  it("callers of one process that arrive together share the backoff's read: 20 cold fills at once, 1 origin request, 2 backoff reads, 1 lease", async () => {
    const t = setup();
    const answers = await t.fillsAtOnce(20);
    expect(answers.map((answer) => answer.kind)).toEqual(Array(20).fill("entry"));
    expect(t.origin.calls).toBe(1);
    expect([t.net.count("backoff read"), t.net.count("lease acquire"), t.net.count("lease release")]).toEqual([
      2, 1, 1,
    ]);
  });

  it("a fresh stored entry answers after 1 round trip, with no lease and no write", async () => {
    const t = setup();
    await t.fill();
    const sent = t.net.sent.length;
    const { answer, before, behind } = await t.fill();
    expect(answer).toMatchObject({ kind: "entry", stored: false });
    expect([before, behind, t.origin.calls]).toEqual([1, 0, 1]);
    expect(t.net.sent.slice(sent)).toEqual(["entry read", "backoff read"]);
  });

  it("a key backing off is refused after 1 round trip, without queuing for its lease", async () => {
    const t = setup();
    t.origin.status = 503;
    t.origin.cacheControl = "no-store";
    // A sick status is asked again once (key-backoff.ts), then the key waits. An error is this
    // flight's answer alone: the lease is released and the waiters told before it (7 round trips).
    expect(await t.fill()).toMatchObject({ answer: { kind: "failed", fwdStatus: 503 }, before: 7, behind: 0 });
    await t.fill();
    expect(t.origin.calls).toBe(2);
    const sent = t.net.sent.length;
    const { answer, before, behind } = await t.fill();
    expect(answer).toMatchObject({ kind: "failed", code: "ORIGIN_BACKOFF" });
    expect([before, behind, t.origin.calls]).toEqual([1, 0, 2]);
    expect(t.net.sent.slice(sent)).toEqual(["entry read", "backoff read"]);
  });

  it("a success with no backoff recorded writes none; a success after a failure deletes the record once", async () => {
    const t = setup();
    t.origin.status = 503;
    t.origin.cacheControl = "no-store";
    await t.fill();
    expect(t.net.count("backoff write")).toBe(1);
    t.origin.status = 200;
    t.origin.cacheControl = "max-age=0";
    await t.fill();
    await t.fill();
    expect(t.origin.calls).toBe(3);
    expect([t.net.count("backoff write"), t.net.count("backoff delete")]).toEqual([1, 1]);
  });

  it("the next flight of the same process finds the lease free at once: an answer stored already stale (max-age=0) is fetched again by the next request, in as many round trips", async () => {
    const t = setup({ origin: { url: "http://origin.test", notFoundTtlMs: 0 } });
    t.origin.cacheControl = "max-age=0";
    const first = await t.fill();
    const second = await t.fill();
    expect(t.origin.calls).toBe(2);
    expect(second.answer).toMatchObject({ kind: "entry", fwdStatus: 200, collapsed: false });
    expect([first.before, second.before]).toEqual([5, 5]);
    expect(t.net.count("lease acquire")).toBe(2);
  });

  it("a revalidation (request no-cache) reads the entry beside the backoff, and only then queues for the lease", async () => {
    const t = setup();
    await t.fill();
    const sent = t.net.sent.length;
    const { answer, before } = await t.fill({ revalidate: true });
    expect(answer).toMatchObject({ kind: "entry", fwdStatus: 200 });
    expect(t.origin.calls).toBe(2);
    expect(before).toBe(5);
    expect(t.net.sent.slice(sent, sent + 3)).toEqual(["entry read", "backoff read", "lease acquire"]);
  });

  it("a caller in another process waiting on the flight is answered by the announcement, which carries the stored entry: no read of it back, one round trip after the holder's answer", async () => {
    const t = setup();
    const { answers, answeredAt } = await t.fillInBoth();
    expect(t.origin.calls).toBe(1);
    const [holder, waiter] = answers as Array<Extract<FillResult, { kind: "entry" }>>;
    expect(holder).toMatchObject({ kind: "entry", fwdStatus: 200, collapsed: false });
    expect(waiter).toMatchObject({ kind: "entry", collapsed: true });
    expect(waiter!.entry.token).toBe(holder!.entry.token);
    // The holder's release and announcement go out together behind its answer; the waiter reads nothing after it.
    expect(answeredAt[1]! - answeredAt[0]!).toBe(1);
    // Each process's look before the lease, and the holder's under it.
    expect(t.net.count("entry read")).toBe(3);
  });

  it("where reads sent after an acquire are answered after it (one Redis), the look under the lease goes beside the acquire: a cold miss answers after 4 round trips, a waiter in another process 1 after its holder", async () => {
    const t = setup({}, true);
    const { answer, before } = await t.fill();
    expect(answer).toMatchObject({ kind: "entry", fwdStatus: 200, stored: true });
    expect(before).toBe(4);
    expect(t.net.sent.slice(0, 6)).toEqual([
      "entry read",
      "backoff read",
      "lease acquire",
      "entry read",
      "backoff read",
      "origin",
    ]);
    const both = setup({}, true);
    const { answers, answeredAt } = await both.fillInBoth();
    expect(both.origin.calls).toBe(1);
    expect(answers.map((a) => a.kind)).toEqual(["entry", "entry"]);
    expect(answeredAt).toEqual([4, 5]);
  });

  it("callers that come while their process's flight for an expired entry runs join it without reading the entry: 10 of them, no more reads, 1 origin request", async () => {
    const t = setup();
    t.origin.cacheControl = "max-age=1";
    await t.fill();
    t.clock.advance(2_000);
    const sent = t.net.sent.length;
    const { answers } = await t.fillsJoining(10);
    expect(t.origin.calls).toBe(2);
    expect(answers.map((answer) => answer.kind)).toEqual(Array(11).fill("entry"));
    expect(
      new Set(answers.map((answer) => (answer as Extract<FillResult, { kind: "entry" }>).entry.body.length)).size,
    ).toBe(1);
    // The leader's look and its look under the lease; each caller after it read the entry before.
    expect(t.net.sent.slice(sent).filter((call) => call === "entry read")).toHaveLength(2);
  });

  it("callers that come while a stale-while-revalidate refresh runs still read the entry: each is answered the stale copy at once", async () => {
    const t = setup();
    t.origin.cacheControl = "max-age=1, stale-while-revalidate=60";
    const { answer } = await t.fill();
    const staleToken = (answer as Extract<FillResult, { kind: "entry" }>).entry.token;
    t.clock.advance(2_000);
    const { answers, answeredAt } = await t.fillsJoining(10);
    expect(t.origin.calls).toBe(2);
    // The first is answered stale after its look; the 10 after theirs, before the refresh's origin call returns.
    expect(answers.map((answer) => answer.kind === "entry" && answer.entry.token)).toEqual(Array(11).fill(staleToken));
    expect(answeredAt[0]).toBe(11);
  });
});

describe("a fill whose origin permit had to wait (a fleet after Redis lost its data)", () => {
  it("a permit granted at once costs no check of the lease: a cold miss sends what it always did; one that waited, one read more", async () => {
    const t = setup({}, false, undefined);
    await t.fill();
    expect(t.net.count("lease holds")).toBe(0);
    const checked = setup({}, false, { holds: () => true });
    const { answer, before } = await checked.fill();
    // Every permit of this guard waited: one read more, beside nothing, and the call is made.
    expect(answer).toMatchObject({ kind: "entry", fwdStatus: 200, stored: true });
    expect([before, checked.net.count("lease holds"), checked.origin.calls]).toEqual([6, 1, 1]);
  });

  it("a lease taken while its permit waited: no origin call, nothing freed or announced; the flight waits on the key's new holder and takes its entry", async () => {
    let theirs: Lease | undefined;
    const t = setup({}, false, {
      holds: async (lease) => {
        // Redis lost the lease; another process's fill took the key and kept it (lease.ts reassert).
        await t.memoryLeases.release(lease);
        theirs = await t.memoryLeases.acquire(lease.key, 15_000);
        return false;
      },
    });
    let answer: FillResult | undefined;
    void t.peer.fill(pageRequest).then((result) => (answer = result));
    for (await settle(); !t.net.sent.includes("subscribe"); await settle())
      if ((await t.net.next(() => t.net.sent.includes("subscribe"))) === "stuck")
        throw new Error("the fill waits for nothing in flight");
    expect(t.origin.calls).toBe(0);
    expect([t.net.count("lease release"), t.announced]).toEqual([0, []]);
    // The holder's fill ends: its entry, announced.
    const entry = testEntry(key, t.clock.now(), { token: theirs!.token, url: pageRequest.url });
    await t.entries.put(entry);
    await t.memoryLeases.release(theirs!);
    void t.announceFill(key, `done:${entry.token}`, entry);
    for (await settle(); answer === undefined; await settle())
      if ((await t.net.next(() => answer !== undefined)) === "stuck")
        throw new Error("the fill waits for nothing in flight");
    expect(answer).toMatchObject({ kind: "entry", collapsed: true, entry: { token: theirs!.token } });
    expect(t.origin.calls).toBe(0);
  });
});
