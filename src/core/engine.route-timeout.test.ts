/**
 * A route's own origin timeout (`routes[].timeoutMs`), as clients see it: a long poll the
 * origin answers after 12 s, past the site-wide `origin.timeoutMs` (10 s), gets its answer on
 * a route that allows for it, and the next poll is not refused; elsewhere the 504 and the
 * backoff stay. Every kind of origin call keeps to its route's timeout: relays, unsafe
 * methods, fills and revalidations. Timers are faked: the test advances 12 s, no one waits.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ManualClock } from "./clock.ts";
import { parseConfig, type ConfigInput } from "./config.ts";
import { Engine, type EngineRequest } from "./engine.ts";
import { KeyCoordinator } from "./fill/key-coordinator.ts";
import { MemoryLeaseManager } from "./fill/memory-lease.ts";
import { RefreshMarks } from "./fill/refresh-marks.ts";
import { LocalGuard } from "./guard/local-guard.ts";
import { MemoryBackoffStore } from "./guard/key-backoff.ts";
import type { FetchLike } from "./origin/origin-client.ts";
import { LruStore } from "./store/lru-store.ts";

/** An origin that answers every request after `delayMs` (a long poll, a slow report), or not at all once aborted. */
class SlowOrigin {
  calls = 0;
  delayMs = 12_000;
  cacheControl = "no-store";
  version = 0;
  /** When herdless gave up on the last call (the test's clock). */
  abortedAt: number | undefined;

  constructor(private readonly clock: ManualClock) {}

  fetch: FetchLike = (url, init) => {
    this.calls++;
    const path = new URL(url).pathname;
    const revalidating = new Headers(init.headers).has("if-none-match");
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const headers = { "cache-control": this.cacheControl, etag: `"v${this.version}"` };
        if (revalidating) resolve(new Response(null, { status: 304, headers }));
        else resolve(new Response(`v${this.version} ${init.method ?? "GET"} ${path}`, { status: 200, headers }));
      }, this.delayMs);
      init.signal?.addEventListener("abort", () => {
        this.abortedAt = this.clock.now();
        clearTimeout(timer);
        reject(init.signal?.reason);
      });
    });
  };
}

function setup(input: Partial<ConfigInput> = {}) {
  const clock = new ManualClock(1_900_000_000_000);
  const config = parseConfig({
    origin: { url: "http://origin.test" },
    // One key under test: the breaker stays out of the way; the per-key backoff is what shows.
    breaker: { failureThreshold: 1_000 },
    ...input,
  });
  const origin = new SlowOrigin(clock);
  const guard = new LocalGuard({ config, clock });
  const pending: Promise<unknown>[] = [];
  const background = (work: Promise<unknown>) => void pending.push(work);
  const parts = { config, clock, guard, fetch: origin.fetch, background, backoff: new MemoryBackoffStore(clock) };
  const coordinator = new KeyCoordinator({
    ...parts,
    store: new LruStore({ maxBytes: 1 << 24, clock }),
    leases: new MemoryLeaseManager(clock),
  });
  const engine = new Engine({
    ...parts,
    near: new LruStore({ maxBytes: 1 << 24, clock }),
    coordinator,
    refreshMarks: new RefreshMarks(20_000),
  });
  /** One request, with the origin's clock run on until it is answered (at most a minute). */
  const send = async (path: string, method = "GET") => {
    const startedAt = clock.now();
    let done = false;
    const answer = engine.handle(request(path, method)).finally(() => (done = true));
    for (let ms = 0; !done && ms < 60_000; ms += 500) {
      await vi.advanceTimersByTimeAsync(500);
      clock.advance(500);
    }
    const res = await answer;
    while (pending.length > 0) await Promise.allSettled(pending.splice(0));
    const header = (name: string) => res.headers.find(([n]) => n === name)?.[1];
    return {
      status: res.status,
      cacheStatus: header("cache-status") ?? "",
      body:
        res.body instanceof ReadableStream
          ? await new Response(res.body).text()
          : new TextDecoder().decode(res.body ?? undefined),
      tookMs: clock.now() - startedAt,
    };
  };
  return { clock, origin, send };
}

function request(path: string, method: string): EngineRequest {
  return { method, url: new URL(`https://site.test${path}`), headers: new Headers(), rawHeaders: [] };
}

const routes = [
  { match: "/poll/*", bypass: true, timeoutMs: 30_000 },
  { match: "/slow/*", bypass: true },
];

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("routes[].timeoutMs: a route's own origin timeout", () => {
  it("a long poll answered after 12 s on a route with timeoutMs 30000 gets its 200, and the next poll is not refused", async () => {
    const t = setup({ routes });
    const first = await t.send("/poll/chat?u=1");
    expect([first.status, first.body, first.cacheStatus]).toEqual([
      200,
      "v0 GET /poll/chat",
      "herdless; fwd=bypass; fwd-status=200",
    ]);
    expect(first.tookMs).toBeGreaterThanOrEqual(12_000);
    const next = await t.send("/poll/chat?u=1");
    expect([next.status, next.cacheStatus]).toEqual([200, "herdless; fwd=bypass; fwd-status=200"]);
    expect(t.origin.calls).toBe(2);
  });

  it("the same poll on a bypass route without it: 504 at origin.timeoutMs (10 s), as before", async () => {
    const t = setup({ routes });
    const first = await t.send("/slow/chat?u=1");
    expect([first.status, first.cacheStatus]).toEqual([504, "herdless; fwd=bypass; detail=origin-error"]);
    expect(first.tookMs).toBeLessThan(12_000);
    expect(t.origin.calls).toBe(1);
  });

  it("a no-store poll on a route that caches: 504 then 503 backoff without its own timeout; 200 and 200 with it", async () => {
    // As the red team met it: no routes at all, the poll goes through the key's fill.
    let t = setup();
    const timedOut = await t.send("/poll/chat?u=3");
    expect([timedOut.status, timedOut.cacheStatus]).toEqual([504, "herdless; fwd=uri-miss; detail=origin-error"]);
    const refused = await t.send("/poll/chat?u=3");
    expect([refused.status, refused.cacheStatus]).toEqual([503, "herdless; fwd=uri-miss; detail=backoff"]);
    expect(t.origin.calls).toBe(1);

    t = setup({
      routes: [{ match: "/poll/*", timeoutMs: 30_000 }],
      coordinator: { lockLeaseMs: 35_000, waitTimeoutMs: 40_000 },
    });
    for (let i = 0; i < 2; i++) {
      const answer = await t.send("/poll/chat?u=3");
      expect([answer.status, answer.body]).toEqual([200, "v0 GET /poll/chat"]);
    }
    expect(t.origin.calls).toBe(2);
  });

  it("past the route's own timeout the call is still a sick one: 504, then the key backs off", async () => {
    const t = setup({
      routes: [{ match: "/reports/*", timeoutMs: 15_000 }],
      coordinator: { lockLeaseMs: 20_000, waitTimeoutMs: 25_000 },
    });
    t.origin.delayMs = 40_000;
    const startedAt = t.clock.now();
    const first = await t.send("/reports/q4");
    expect([first.status, first.cacheStatus]).toEqual([504, "herdless; fwd=uri-miss; detail=origin-error"]);
    // The call is cut at the route's timeout. The 504 itself waits on the key's backoff record,
    // which hashes the request's fields with WebCrypto, off the faked timers: on a loaded
    // machine the loop in send() ran the test's clock on to its end meanwhile (60 s).
    // The test's clock follows the timers a step (500 ms) behind: the cut reads 14.5 s.
    const cutAfterMs = (t.origin.abortedAt ?? Infinity) - startedAt;
    expect(cutAfterMs).toBeGreaterThanOrEqual(14_500);
    expect(cutAfterMs).toBeLessThan(40_000);
    const next = await t.send("/reports/q4");
    expect([next.status, next.cacheStatus]).toEqual([503, "herdless; fwd=uri-miss; detail=backoff"]);
    expect(t.origin.calls).toBe(1);
  });

  it("an unsafe method (a POST to the poll route) keeps to the route's timeout too", async () => {
    const t = setup({ routes });
    const posted = await t.send("/poll/send", "POST");
    expect([posted.status, posted.body]).toEqual([200, "v0 POST /poll/send"]);
    const elsewhere = await t.send("/slow/send", "POST");
    expect(elsewhere.status).toBe(504);
  });

  it("a route that caches: its fill and its revalidation wait for a 12 s report, and it is stored", async () => {
    const t = setup({
      routes: [{ match: "/reports/*", timeoutMs: 15_000 }],
      coordinator: { lockLeaseMs: 20_000, waitTimeoutMs: 25_000 },
    });
    t.origin.cacheControl = "max-age=60";
    const filled = await t.send("/reports/q3");
    expect([filled.status, filled.body, filled.cacheStatus]).toEqual([
      200,
      "v0 GET /reports/q3",
      // The answer is 12 s old when it lands: what is left of its max-age.
      "herdless; fwd=uri-miss; fwd-status=200; ttl=48; stored",
    ]);
    expect((await t.send("/reports/q3")).cacheStatus).toBe("herdless; hit; ttl=48");
    t.clock.advance(61_000);
    const revalidated = await t.send("/reports/q3");
    expect([revalidated.status, revalidated.cacheStatus]).toEqual([
      200,
      "herdless; fwd=stale; fwd-status=304; ttl=48; stored",
    ]);
    expect(t.origin.calls).toBe(2);
  });

  it("a route's timeout may be shorter than the origin's: its call ends at 2 s", async () => {
    const t = setup({ routes: [{ match: "/quick/*", bypass: true, timeoutMs: 2_000 }] });
    const answer = await t.send("/quick/x");
    expect([answer.status, answer.cacheStatus]).toEqual([504, "herdless; fwd=bypass; detail=origin-error"]);
    expect(answer.tookMs).toBeLessThan(3_000);
  });

  it("defaults.timeoutMs applies to every route that sets none", async () => {
    const t = setup({
      defaults: { bypass: true, timeoutMs: 20_000 },
      routes: [{ match: "/slow/*", timeoutMs: 5_000 }],
    });
    expect((await t.send("/anything")).status).toBe(200);
    expect((await t.send("/slow/x")).status).toBe(504);
  });
});
