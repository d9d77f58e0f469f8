/**
 * Per-key backoff and refresh-ahead, as clients see them: which answer, which Cache-Status,
 * how many origin requests. Two edges (each its own near tier) share one coordinator, as
 * two data centers or two fleet members do.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "./clock.ts";
import { parseConfig, type ConfigInput } from "./config.ts";
import { Engine, type EngineRequest } from "./engine.ts";
import { KeyCoordinator } from "./fill/key-coordinator.ts";
import { MemoryLeaseManager } from "./fill/memory-lease.ts";
import { RefreshMarks } from "./fill/refresh-marks.ts";
import { LocalGuard } from "./guard/local-guard.ts";
import { Metrics } from "./admin/metrics.ts";
import { MemoryBackoffStore } from "./guard/key-backoff.ts";
import type { FetchLike } from "./origin/origin-client.ts";
import { LruStore } from "./store/lru-store.ts";

/** An origin whose health the test sets: `ok`, `down` (connection refused) or a status. */
class Origin {
  calls = 0;
  version = 0;
  health: "ok" | "down" | number = "ok";
  cacheControl = "max-age=60, stale-if-error=600";
  /** While set, answers wait for it: an origin slower than the test's clock. */
  held: Promise<void> | undefined;

  /** Paths of the calls the origin answered while up, in order. */
  readonly answered: string[] = [];

  /** Hears every call, as it arrives. */
  onCall: ((url: string) => void) | undefined;

  fetch: FetchLike = async (url, init) => {
    this.calls++;
    this.onCall?.(url);
    await this.held;
    if (this.health === "ok") this.answered.push(new URL(url).pathname);
    // As undici reports a refused connection: a TypeError whose cause is the socket's error.
    if (this.health === "down")
      throw new TypeError("fetch failed", {
        cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
      });
    if (typeof this.health === "number") return new Response("origin error", { status: this.health });
    const etag = `"v${this.version}"`;
    const headers = { etag, "cache-control": this.cacheControl };
    if (new Headers(init.headers).get("if-none-match") === etag) return new Response(null, { status: 304, headers });
    return new Response(`v${this.version} ${new URL(url).pathname}`, { status: 200, headers });
  };
}

function setup(overrides: Partial<ConfigInput> = {}) {
  const clock = new ManualClock(1_900_000_000_000);
  // Lax breaker: these tests are about one key, not about the origin as a whole.
  const config = parseConfig({
    origin: { url: "http://origin.test" },
    ...overrides,
    breaker: { failureThreshold: 1_000, ...overrides.breaker },
  });
  const origin = new Origin();
  const guard = new LocalGuard({ config, clock });
  const pending: Promise<unknown>[] = [];
  const background = (work: Promise<unknown>) => void pending.push(work);
  const backoffs = new MemoryBackoffStore(clock);
  const metrics = new Metrics(clock, clock);
  const coordinator = new KeyCoordinator({
    config,
    clock,
    store: new LruStore({ maxBytes: 1 << 24, clock }),
    leases: new MemoryLeaseManager(clock),
    guard,
    fetch: origin.fetch,
    background,
    backoff: backoffs,
  });
  const edge = () =>
    new Engine({
      config,
      clock,
      near: new LruStore({ maxBytes: 1 << 24, clock }),
      coordinator,
      guard,
      fetch: origin.fetch,
      background,
      refreshMarks: new RefreshMarks(20_000),
      metrics,
    });
  const edges = [edge(), edge()];
  const settled = async () => {
    while (pending.length > 0) await Promise.allSettled(pending.splice(0));
  };
  /** One request through edge `i`, once its background work (and what that started) is done unless `leaveRunning`. */
  const get = async (path: string, i = 0, leaveRunning = false) => {
    const res = await edges[i]!.handle(req(path));
    if (!leaveRunning) await settled();
    return {
      status: res.status,
      cacheStatus: header(res, "cache-status") ?? "",
      retryAfter: header(res, "retry-after"),
      body: res.body instanceof Uint8Array ? new TextDecoder().decode(res.body) : "",
    };
  };
  return { clock, origin, get, settled, guard, backoffs, metrics };
}

function req(path: string): EngineRequest {
  return { method: "GET", url: new URL(`https://site.test${path}`), headers: new Headers(), rawHeaders: [] };
}

const header = (res: { headers: [string, string][] }, name: string) => res.headers.find(([n]) => n === name)?.[1];

/** `/page` stored under `cacheControl`, then 61 s later: past max-age=60 and every window the header gives. */
async function pastMaxAge(cacheControl: string, overrides: Partial<ConfigInput> = {}) {
  const t = setup(overrides);
  t.origin.cacheControl = cacheControl;
  await t.get("/page");
  t.clock.advance(61_000);
  return t;
}

describe("per-key backoff: a failing key is not asked again until its backoff passes", () => {
  it("5 requests for a stale key whose origin is down: 1 origin call, 5 stale answers", async () => {
    const t = setup();
    expect((await t.get("/page")).status).toBe(200);
    t.clock.advance(61_000);
    t.origin.health = "down";
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await t.get("/page", i % 2));
    expect(t.origin.calls).toBe(2);
    expect(answers.map((a) => [a.status, a.body])).toEqual(Array(5).fill([200, "v0 /page"]));
    expect(answers[0]!.cacheStatus).toBe("herdless; fwd=stale; ttl=-1; detail=stale-if-error");
    for (const a of answers.slice(1)) expect(a.cacheStatus).toBe("herdless; fwd=stale; ttl=-1; detail=backoff");
    // The dashboard's counters: one key began backing off, four answers were given meanwhile.
    expect(t.metrics.protection).toEqual({ "backoff-started": 1, "backoff-answered": 4 });
  });

  it("after the backoff one retry goes through; failing again doubles the backoff; a success resets it", async () => {
    const t = setup({ breaker: { probeIntervalMs: 1_000 } });
    await t.get("/page");
    t.clock.advance(61_000);
    t.origin.health = 503;
    await t.get("/page");
    expect(t.origin.calls).toBe(2);
    // Its stale-if-error copy answers while the key waits: at least probeIntervalMs (1 s, up
    // to half as much again, spread over keys), so the breaker could judge a run of such calls.
    t.clock.advance(999);
    expect((await t.get("/page", 1)).cacheStatus).toBe("herdless; fwd=stale; ttl=-2; detail=backoff");
    expect(t.origin.calls).toBe(2);
    t.clock.advance(501);
    const retried = await t.get("/page", 1);
    expect(retried.cacheStatus).toBe("herdless; fwd=stale; fwd-status=503; ttl=-3; detail=stale-if-error");
    expect(t.origin.calls).toBe(3);
    // The third call, 1 to 1.5 s later (its own backoff, 0.5 to 1 s, is shorter), fails too: then 1 to 2 s.
    t.clock.advance(1_500);
    await t.get("/page");
    expect(t.origin.calls).toBe(4);
    t.clock.advance(999);
    expect((await t.get("/page")).cacheStatus).toContain("detail=backoff");
    expect(t.origin.calls).toBe(4);
    t.clock.advance(1_001);
    t.origin.health = "ok";
    const healed = await t.get("/page");
    expect(healed.cacheStatus).toBe("herdless; fwd=stale; fwd-status=304; ttl=60; stored");
    expect(t.origin.calls).toBe(5);
    // Reset: the next failure (no answer: it waits at once) backs off from the base again, not 4 s.
    t.clock.advance(61_000);
    t.origin.health = "down";
    await t.get("/page");
    t.clock.advance(1_500);
    await t.get("/page");
    expect(t.origin.calls).toBe(7);
  });

  it("a sick status with no copy to stand in is asked again at once (RFC 9111 §4: a 5xx is not reused), then the key waits", async () => {
    const t = setup({ breaker: { probeIntervalMs: 1_000 } });
    t.origin.health = 503;
    expect((await t.get("/cold")).status).toBe(503);
    expect((await t.get("/cold")).status).toBe(503);
    expect(t.origin.calls).toBe(2);
    expect((await t.get("/cold")).cacheStatus).toBe("herdless; fwd=uri-miss; detail=backoff");
    expect(t.origin.calls).toBe(2);
  });

  it("nothing stored: a quick 503 with Retry-After while the key backs off, no origin call", async () => {
    const t = setup();
    t.origin.health = "down";
    const first = await t.get("/cold");
    expect([first.status, first.cacheStatus]).toEqual([502, "herdless; fwd=uri-miss; detail=origin-error"]);
    const refused = await t.get("/cold", 1);
    expect([refused.status, refused.cacheStatus, refused.retryAfter]).toEqual([
      503,
      "herdless; fwd=uri-miss; detail=backoff",
      "1",
    ]);
    expect(t.origin.calls).toBe(1);
    // Another key is asked as usual.
    await t.get("/other");
    expect(t.origin.calls).toBe(2);
  });

  it("an application error (500, outside breaker.failureStatuses) is not backed off: the next request asks again", async () => {
    const t = setup();
    t.origin.health = 500;
    expect((await t.get("/broken")).status).toBe(500);
    expect((await t.get("/broken")).status).toBe(500);
    expect(t.origin.calls).toBe(2);
  });

  it("serves a copy past its stale-if-error window while the key backs off (breaker.serveStaleWhileOpen)", async () => {
    const t = await pastMaxAge("max-age=60");
    // A sick status is asked again once at once (a blip), then the key backs off.
    t.origin.health = 503;
    expect((await t.get("/page")).status).toBe(503);
    expect((await t.get("/page")).status).toBe(503);
    const stale = await t.get("/page");
    expect([stale.status, stale.cacheStatus]).toEqual([200, "herdless; fwd=stale; ttl=-1; detail=backoff"]);
    expect(t.origin.calls).toBe(3);
  });

  it("an origin that cannot be reached never shows its error while a copy exists, even past stale-if-error (RFC 9111 §4.2.4)", async () => {
    const t = await pastMaxAge("max-age=60");
    t.origin.health = "down";
    const first = await t.get("/page");
    expect([first.status, first.cacheStatus]).toEqual([200, "herdless; fwd=stale; ttl=-1; detail=stale-if-error"]);
    expect(t.origin.calls).toBe(2);
    const strict = await pastMaxAge("max-age=60", { breaker: { serveStaleWhileOpen: false } });
    strict.origin.health = "down";
    expect((await strict.get("/page")).status).toBe(502);
  });

  it("must-revalidate, proxy-revalidate, s-maxage and no-cache copies are not served when the origin cannot be reached: a 504 (RFC 9111 §5.2.2.2)", async () => {
    for (const cacheControl of [
      "max-age=60, must-revalidate",
      "max-age=60, proxy-revalidate",
      "s-maxage=60",
      "no-cache",
    ]) {
      const t = await pastMaxAge(cacheControl);
      t.origin.health = "down";
      expect((await t.get("/page")).status, cacheControl).toBe(504);
    }
  });

  it("breaker.backoffBaseMs 0 turns it off: every request asks the origin again", async () => {
    const t = setup({ breaker: { backoffBaseMs: 0 } });
    t.origin.health = "down";
    await t.get("/cold");
    await t.get("/cold");
    expect(t.origin.calls).toBe(2);
  });
});

describe("refresh-ahead: a hot key is renewed before it turns stale", () => {
  const hot = { defaults: { refreshAhead: 0.05 } };

  it("steady requests on a max-age=2 key without SWR: after warm-up every answer is a hit, ≤ 1.1 origin requests per lifetime", async () => {
    const t = setup(hot);
    t.origin.cacheControl = "max-age=2";
    await t.get("/hot", 0);
    await t.get("/hot", 1);
    const statuses: string[] = [];
    // Two edges, 50 ms apart each, for 60 s: 30 lifetimes.
    for (let i = 0; i < 1_200; i++) {
      t.clock.advance(50);
      if (i % 7 === 0) t.origin.version++;
      const answer = await t.get("/hot", i % 2);
      statuses.push(answer.cacheStatus);
      expect(answer.status).toBe(200);
    }
    expect(statuses.filter((s) => !s.startsWith("herdless; hit; "))).toEqual([]);
    expect(statuses.filter((s) => s.includes("detail=refresh-ahead")).length).toBeGreaterThan(0);
    const renewals = t.origin.calls - 1;
    expect(renewals).toBeGreaterThanOrEqual(29);
    expect(renewals).toBeLessThanOrEqual(33);
  });

  it("a cold key is never refreshed: a request outside the window starts nothing", async () => {
    const t = setup(hot);
    t.origin.cacheControl = "max-age=2";
    await t.get("/cold");
    t.clock.advance(1_800);
    expect((await t.get("/cold")).cacheStatus).toBe("herdless; hit; ttl=0");
    t.clock.advance(10_000);
    expect(t.origin.calls).toBe(1);
  });

  it("one renewal per key per lifetime for every edge: the second edge in the window gets the renewed copy", async () => {
    const t = setup(hot);
    t.origin.cacheControl = "max-age=20";
    await t.get("/page", 0);
    await t.get("/page", 1);
    t.clock.advance(19_500);
    expect((await t.get("/page", 0)).cacheStatus).toBe("herdless; hit; ttl=0; detail=refresh-ahead");
    expect((await t.get("/page", 1)).cacheStatus).toBe("herdless; hit; ttl=0; detail=refresh-ahead");
    expect(t.origin.calls).toBe(2);
    // Both edges now hold the renewed copy.
    expect((await t.get("/page", 0)).cacheStatus).toBe("herdless; hit; ttl=20");
    expect((await t.get("/page", 1)).cacheStatus).toBe("herdless; hit; ttl=20");
  });

  it("goes through the key's backoff: a failing key is not renewed again until its backoff passes", async () => {
    const t = setup(hot);
    t.origin.cacheControl = "max-age=20";
    await t.get("/page", 0);
    await t.get("/page", 1);
    t.clock.advance(19_500);
    t.origin.health = "down";
    await t.get("/page");
    expect(t.origin.calls).toBe(2);
    t.clock.advance(100);
    expect((await t.get("/page", 1)).cacheStatus).toBe("herdless; hit; ttl=0; detail=refresh-ahead");
    expect(t.origin.calls).toBe(2);
  });

  it("a renewal slower than the window: requests after expiry get the expiring copy at once, from either edge", async () => {
    const t = setup(hot);
    t.origin.cacheControl = "max-age=20";
    await t.get("/page", 0);
    await t.get("/page", 1);
    let answer = () => {};
    t.origin.held = new Promise<void>((resolve) => (answer = resolve));
    t.clock.advance(19_500);
    // Edge 0 starts the renewal; the origin takes longer than the 1 s left.
    expect((await t.get("/page", 0, true)).cacheStatus).toBe("herdless; hit; ttl=0; detail=refresh-ahead");
    t.clock.advance(1_000);
    const after = [await t.get("/page", 0, true), await t.get("/page", 1, true), await t.get("/page", 1, true)];
    // Edge 0 knows its own renewal; edge 1, which saw no request in the window, hears it from
    // the coordinator once, then follows the renewal itself and answers from its own copy.
    expect(after.map((a) => [a.status, a.body, a.cacheStatus])).toEqual([
      [200, "v0 /page", "herdless; hit; ttl=-1; detail=stale-while-revalidate"],
      [200, "v0 /page", "herdless; hit; ttl=-1; detail=stale-while-revalidate"],
      [200, "v0 /page", "herdless; hit; ttl=-1; detail=stale-while-revalidate"],
    ]);
    expect(t.origin.calls).toBe(2);
    answer();
    await t.settled();
    expect((await t.get("/page", 0)).cacheStatus).toBe("herdless; hit; ttl=20");
    // The coordinator's renewed copy: a hit, not forwarded (RFC 9211 §2.2), though edge 1's own copy had expired.
    expect((await t.get("/page", 1)).cacheStatus).toBe("herdless; hit; ttl=20");
    expect(t.origin.calls).toBe(2);
  });

  it("a copy that expired with no renewal running, or under must-revalidate, waits as before", async () => {
    const t = setup(hot);
    t.origin.cacheControl = "max-age=20, must-revalidate";
    await t.get("/page", 0);
    let answer = () => {};
    t.origin.held = new Promise<void>((resolve) => (answer = resolve));
    t.clock.advance(19_500);
    await t.get("/page", 0, true);
    t.clock.advance(1_000);
    const waiting = t.get("/page", 0, true);
    answer();
    expect((await waiting).cacheStatus).toBe("herdless; fwd=stale; fwd-status=304; ttl=20; collapsed");
  });

  it("off by default", async () => {
    const t = setup();
    t.origin.cacheControl = "max-age=20";
    await t.get("/page");
    t.clock.advance(19_900);
    expect((await t.get("/page")).cacheStatus).toBe("herdless; hit; ttl=0");
    expect(t.origin.calls).toBe(1);
  });
});

describe("recovery: the breaker's close ends every key's backoff", () => {
  it("outage → keys back off → origin back → every key refreshed within one probe interval of the close, one request each", async () => {
    const probeIntervalMs = 1_000;
    const t = setup({ breaker: { failureThreshold: 3, minFailingKeys: 3, probeIntervalMs } });
    const keys = Array.from({ length: 10 }, (_, i) => `/k${i}`);
    for (const key of keys) await t.get(key);
    t.clock.advance(61_000);
    t.origin.health = "down";
    // 60 s of outage, every key asked every 100 ms: each probe that fails backs its key off longer.
    for (let tick = 0; tick < 600; tick++) {
      t.clock.advance(100);
      for (const key of keys) expect((await t.get(key)).body).toBe(`v0 ${key}`);
    }
    expect((await t.guard.snapshot()).breaker).not.toBe("closed");
    const untils = await Promise.all(
      keys.map(async (key) => (await t.backoffs.get(`GET https://site.test${key}`))?.until),
    );
    // Without the close cutting them short, some keys would wait well past the next interval.
    expect(Math.max(...untils.map((u) => u ?? 0)) - t.clock.now()).toBeGreaterThan(5 * probeIntervalMs);

    t.origin.health = "ok";
    t.origin.version = 1;
    t.origin.answered.length = 0;
    let closedAt: number | undefined;
    const refreshedAt = new Map<string, number>();
    for (let tick = 0; tick < 100; tick++) {
      t.clock.advance(100);
      for (const key of keys) {
        const answer = await t.get(key);
        if (closedAt === undefined && t.origin.answered.length > 0) closedAt = t.clock.now();
        if (answer.body === `v1 ${key}` && !refreshedAt.has(key)) refreshedAt.set(key, t.clock.now());
      }
    }
    expect(closedAt).toBeDefined();
    expect((await t.guard.snapshot()).recoveredAt).toBe(closedAt);
    for (const key of keys) expect(refreshedAt.get(key)! - closedAt!).toBeLessThanOrEqual(probeIntervalMs + 100);
    expect([...t.origin.answered].sort()).toEqual([...keys].sort());
  });

  it("a key that fails again after the close backs off as before: the close cuts short only what came before it", async () => {
    const probeIntervalMs = 1_000;
    const t = setup({ breaker: { failureThreshold: 3, minFailingKeys: 3, probeIntervalMs } });
    await t.get("/broken");
    t.clock.advance(61_000);
    t.origin.health = 503;
    for (let i = 0; i < 6; i++) {
      await t.get("/broken");
      t.clock.advance(((await t.backoffs.get("GET https://site.test/broken"))?.until ?? 0) - t.clock.now());
    }
    // One URL failing never opens the breaker; its backoff is its own and long by now.
    expect((await t.guard.snapshot()).breaker).toBe("closed");
    const calls = t.origin.calls;
    await t.get("/broken");
    t.clock.advance(2 * probeIntervalMs);
    await t.get("/broken");
    expect(t.origin.calls).toBe(calls + 1);
  });
});

describe("an outage, counted: the origin requests it costs", () => {
  /**
   * The bench's outage without its load (bench/scenarios.ts): `keys` keys cached with
   * max-age=2, stale-if-error=600 and asked every 50 ms, the origin answering 503 for
   * `downIntervals` probe intervals. Returns the origin calls while it was down, by key and by
   * interval, and the clients' answers that were not 200.
   */
  async function outage(keys: number, downIntervals: number) {
    const probeIntervalMs = 1_000;
    const t = setup({ breaker: { failureThreshold: 2, minFailingKeys: 3, probeIntervalMs } });
    t.origin.cacheControl = "max-age=2, stale-if-error=600";
    const paths = Array.from({ length: keys }, (_, i) => `/outage/k${i}`);
    // Filled 80 ms apart, as the bench's warm-up leaves them: their expiries are spread.
    for (const path of paths) {
      await t.get(path);
      t.clock.advance(80);
    }
    const calls: { at: number; path: string }[] = [];
    let downSince: number | undefined;
    t.origin.onCall = (url) => {
      if (downSince !== undefined) calls.push({ at: t.clock.now() - downSince, path: new URL(url).pathname });
    };
    let errors = 0;
    const tick = async () => {
      t.clock.advance(50);
      for (const path of paths) if ((await t.get(path)).status !== 200) errors++;
    };
    for (let i = 0; i < 60; i++) await tick();
    t.origin.health = 503;
    downSince = t.clock.now();
    while (t.clock.now() - downSince < downIntervals * probeIntervalMs) await tick();
    t.origin.health = "ok";
    downSince = undefined;
    for (let i = 0; i < 60; i++) await tick();
    // Intervals from the first sick call (the run's start): a key's copy may stay fresh a while into the outage.
    const start = calls[0]?.at ?? 0;
    const perInterval = Array.from(
      { length: downIntervals },
      (_, i) => calls.filter((c) => Math.floor((c.at - start) / probeIntervalMs) === i).length,
    );
    const firstInterval = calls.filter((c) => c.at - start < probeIntervalMs);
    if (process.env.OUTAGE_DEBUG) console.log(JSON.stringify(calls), perInterval);
    return { calls, perInterval, firstInterval, errors };
  }

  it("10 keys, origin down 10 probe intervals: each key asked once before the breaker may judge, then one call per interval (was 30)", async () => {
    const { calls, perInterval, firstInterval, errors } = await outage(10, 10);
    expect(errors).toBe(0);
    // The breaker's run must last probeIntervalMs before it opens (a healthy origin's few broken
    // URLs fail together, then stop): in that first interval each key is asked once, none twice.
    expect(new Set(firstInterval.map((c) => c.path)).size).toBe(firstInterval.length);
    // Then one call a probe interval at most: the one that finds the run lasted (it opens the
    // breaker), then one probe per interval.
    for (const n of perInterval.slice(1)) expect(n).toBeLessThanOrEqual(1);
    // keys + ⌈down ÷ probeIntervalMs⌉ at most (bench/report.ts): 20; it was 30 (20 in the first interval).
    expect(calls.length).toBeLessThanOrEqual(10 + 10);
  });

  it("3 keys, origin down 20 probe intervals: 3 first calls, then one per interval", async () => {
    const { calls, perInterval, firstInterval, errors } = await outage(3, 20);
    expect(errors).toBe(0);
    expect(firstInterval.length).toBe(3);
    for (const n of perInterval.slice(1)) expect(n).toBeLessThanOrEqual(1);
    expect(calls.length).toBeLessThanOrEqual(3 + 20);
  });
});
