/**
 * An error the origin gives every request, stored with explicit freshness (once it expires,
 * or with Vary on a cold key): how many origin requests its URL costs. Each request comes
 * from another browser (its own `User-Agent`), as on a public site.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "./clock.ts";
import { parseConfig } from "./config.ts";
import { Engine } from "./engine.ts";
import { KeyCoordinator } from "./fill/key-coordinator.ts";
import { MemoryLeaseManager } from "./fill/memory-lease.ts";
import { RefreshMarks } from "./fill/refresh-marks.ts";
import { LocalGuard } from "./guard/local-guard.ts";
import { Metrics } from "./admin/metrics.ts";
import { MemoryBackoffStore } from "./guard/key-backoff.ts";
import type { FetchLike } from "./origin/origin-client.ts";
import { LruStore } from "./store/lru-store.ts";

/** What the origin answers a fill with these request fields: a status and its fields. */
type Answer = (fields: Headers) => [number, Record<string, string>];

/** One edge in front of an origin that answers `status`, marked max-age=60 (and `vary` when given), to every request. */
function setup(status: number, vary?: string) {
  return edgeBefore(() => [status, { "cache-control": "max-age=60", ...(vary ? { vary } : {}) }]);
}

/** One edge in front of an origin that answers as `answer` says. */
function edgeBefore(answer: Answer) {
  const clock = new ManualClock(1_900_000_000_000);
  const config = parseConfig({ origin: { url: "http://origin.test" }, breaker: { failureThreshold: 1_000 } });
  const origin = { calls: 0 };
  const fetch: FetchLike = async (_url, init) => {
    origin.calls++;
    const [status, headers] = answer(new Headers(init.headers));
    return new Response(`error ${status}`, { status, headers });
  };
  const guard = new LocalGuard({ config, clock });
  const pending: Promise<unknown>[] = [];
  const background = (work: Promise<unknown>) => void pending.push(work);
  const store = new LruStore({ maxBytes: 1 << 24, clock });
  const leases = new MemoryLeaseManager(clock);
  const backoff = new MemoryBackoffStore(clock);
  const coordinator = new KeyCoordinator({ config, clock, store, leases, guard, fetch, background, backoff });
  const near = new LruStore({ maxBytes: 1 << 24, clock });
  const metrics = new Metrics(clock, clock);
  const refreshMarks = new RefreshMarks(20_000);
  const edge = new Engine({ config, clock, near, coordinator, guard, fetch, background, refreshMarks, metrics });
  /** A GET of /page from a browser of its own, with `extra` fields; its status, once its background work is done. */
  const get = async (agent: string, extra: [string, string][] = []) => {
    const raw: [string, string][] = [["user-agent", agent], ...extra];
    const url = new URL("https://site.test/page");
    const res = await edge.handle({ method: "GET", url, headers: new Headers(raw), rawHeaders: raw });
    while (pending.length > 0) await Promise.allSettled(pending.splice(0));
    return res.status;
  };
  return { clock, origin, get };
}

describe("an expired error the origin gives everyone is stored again, not asked for on every request", () => {
  it.each([500, 400])(
    "a %i marked max-age=60: 2 origin requests after it expires (its first request's, unconfirmed, then a second browser's), not 1 per request",
    async (status) => {
      const t = setup(status);
      // Two browsers got it: stored confirmed (asked-by.ts), a hit for a third.
      for (const agent of ["Firefox/133.0", "Chrome/131.0", "Edg/131.0"]) expect(await t.get(agent)).toBe(status);
      expect(t.origin.calls).toBe(2);
      t.clock.advance(61_000);
      for (let i = 0; i < 6; i++) expect(await t.get(`Safari/60${i}`)).toBe(status);
      expect(t.origin.calls).toBe(4);
    },
  );

  it("an API's 404 marked max-age=60, every client sending its own X-Api-Version: 1 origin request after it expires, not 1 per request", async () => {
    const t = setup(404);
    const api: [string, string][] = [["x-api-version", "2"]];
    expect(await t.get("client/1", api)).toBe(404);
    expect(await t.get("client/2", api)).toBe(404);
    expect(t.origin.calls).toBe(1);
    t.clock.advance(61_000);
    for (let i = 0; i < 6; i++) expect(await t.get(`client/${i}`, api)).toBe(404);
    expect(t.origin.calls).toBe(2);
  });
});

describe("an error with Vary the origin gives everyone, on a cold key, is confirmed", () => {
  it.each([500, 400])(
    "a %i marked max-age=60 with Vary: Accept-Language, to 6 browsers of one language: 2 origin requests (the first's, unconfirmed, then a second browser's), not 1 per browser",
    async (status) => {
      const t = setup(status, "Accept-Language");
      const en: [string, string][] = [["accept-language", "en"]];
      for (let i = 0; i < 6; i++) expect(await t.get(`Safari/60${i}`, en)).toBe(status);
      expect(t.origin.calls).toBe(2);
    },
  );
});

describe("attack: an error selected on other headers than the URL's copies never rewrites their Vary pointer", () => {
  it("the page varies on X-Lang; the attacker's X-Lang: zz gets the 404 page of a server that adds Vary: Accept-Encoding (max-age=600): not stored, the en copy stays a hit", async () => {
    const t = edgeBefore((fields) =>
      fields.get("x-lang") === "zz"
        ? [404, { "cache-control": "max-age=600", vary: "Accept-Encoding" }]
        : [200, { "cache-control": "max-age=60", vary: "X-Lang" }],
    );
    const lang = (value: string): [string, string][] => [
      ["accept-encoding", "gzip"],
      ["x-lang", value],
    ];
    expect(await t.get("Chrome/131.0", lang("en"))).toBe(200);
    expect(await t.get("Firefox/133.0", lang("zz"))).toBe(404);
    expect(await t.get("curl/8.5", lang("zz"))).toBe(404);
    expect(t.origin.calls).toBe(3);
    // Stored, the 404's Vary rewrote the pointer: every language's copy was a miss.
    expect(await t.get("Safari/605", lang("en"))).toBe(200);
    expect(t.origin.calls).toBe(3);
  });
});
