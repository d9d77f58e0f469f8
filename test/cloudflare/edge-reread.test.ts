/**
 * The isolate's memory copy read again from its data center's Cache API behind a hit, once per
 * `admin.purgePropagationMs` (memory-hit.ts rereadDue), attacked: what the read brings back
 * must never be older than what the isolate knows, and must carry every invalidation.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { routeFor } from "../../src/core/config.ts";
import { canonicalUrl } from "../../src/core/http/canonical-url.ts";
import { primaryKey } from "../../src/core/http/key.ts";
import { cacheUrlFor } from "../../src/cloudflare/cache-api-store.ts";
import { configFromEnv } from "../../src/cloudflare/config-env.ts";
import type { Env } from "../../src/cloudflare/env.ts";
import { dataCenter, EDGE, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

/** The Cache API URL of the entry under `path`'s primary key. */
function cachedUrl(testEnv: Env, path: string): string {
  const url = canonicalUrl(new URL(`${EDGE}${path}`));
  return cacheUrlFor(primaryKey(url, routeFor(configFromEnv(testEnv), url.pathname).key));
}

/**
 * From now on, the first cache.match of `url` reads the cache at once but hands its answer
 * over only on `release()`: a read slow to come back (a loaded workerd took seconds).
 */
function holdFirstMatch(url: string): { release: () => void; held: Promise<void> } {
  let release = () => {};
  let heldNow = () => {};
  const held = new Promise<void>((resolve) => (heldNow = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  let armed = true;
  const open = caches.open.bind(caches);
  vi.spyOn(caches, "open").mockImplementation(async (name: string) => {
    const cache = await open(name);
    const match = cache.match.bind(cache);
    return new Proxy(cache, {
      get(target, property) {
        if (property !== "match") {
          const value: unknown = Reflect.get(target, property);
          return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        }
        return async (request: Request, options?: CacheQueryOptions) => {
          const read = match(request, options);
          if (!armed || new URL(request.url).href !== url) return read;
          armed = false;
          heldNow();
          const found = await read;
          await gate;
          return found;
        };
      },
    });
  });
  return { release, held };
}

/** The first cache.put of `url` starts only on `release()`: a write behind an answer, still on its way. */
function holdFirstPut(url: string): { release: () => void; held: Promise<void> } {
  let release = () => {};
  let heldNow = () => {};
  const held = new Promise<void>((resolve) => (heldNow = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  let armed = true;
  const open = caches.open.bind(caches);
  vi.spyOn(caches, "open").mockImplementation(async (name: string) => {
    const cache = await open(name);
    const put = cache.put.bind(cache);
    return new Proxy(cache, {
      get(target, property) {
        if (property !== "put") {
          const value: unknown = Reflect.get(target, property);
          return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        }
        return async (request: Request, response: Response) => {
          if (armed && new URL(request.url).href === url) {
            armed = false;
            heldNow();
            await gate;
          }
          return put(request, response);
        };
      },
    });
  });
  return { release, held };
}

describe("security: the Worker's re-read of a memory copy never brings back what a write replaced", () => {
  it("a POST through the isolate while its re-read is on the way: the next GET is not the old page", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url, { admin: { purgePropagationMs: 1_000 } });
    const run = crypto.randomUUID().slice(0, 8);
    const path = `/doc-${run}`;
    const dc = dataCenter(`dc-${run}`, testEnv, clock, { isolate: `i-${run}` });
    await useInCoordinators(testEnv, [path], clock);
    const first = await dc.get(path);
    await first.settled;
    clock.advance(1_000);
    // The hit whose re-read is due: its cache.match reads the old copy and is slow to come back.
    const { release, held } = holdFirstMatch(cachedUrl(testEnv, path));
    const hit = await dc.get(path);
    expect([hit.body, hit.cacheStatus]).toEqual([first.body, expect.stringMatching(/^herdless; hit/)]);
    await held;
    // A writer's POST through the same isolate succeeds meanwhile and marks the copy invalid.
    const post = await dc.get(path, { method: "POST", body: "edit" });
    expect(post.status).toBe(200);
    await post.settled;
    release();
    await hit.settled;
    const after = await dc.get(path);
    expect(after.body).not.toBe(first.body);
    expect(after.cacheStatus).toContain("fwd-status=200");
    expect(await origin.count(path)).toBe(3);
  });

  it("another isolate's POST marks a URL whose Cache API copy was evicted: the isolate holding it in memory stops serving it", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url, { admin: { purgePropagationMs: 1_000 } });
    const run = crypto.randomUUID().slice(0, 8);
    const path = `/doc-${run}`;
    const name = `dc-${run}`;
    const [reader, writer] = ["r", "w"].map((isolate) =>
      dataCenter(name, testEnv, clock, { isolate: `${isolate}-${run}` }),
    );
    await useInCoordinators(testEnv, [path], clock);
    const first = await reader!.get(path);
    await first.settled;
    // The data center's cache let the copy go (memory answers every hit, so the Cache API's is never read).
    expect(await (await caches.open(name)).delete(cachedUrl(testEnv, path))).toBe(true);
    const post = await writer!.get(path, { method: "POST", body: "edit" });
    expect(post.status).toBe(200);
    await post.settled;
    clock.advance(1_000);
    const last = await reader!.get(path);
    expect(last.body).toBe(first.body);
    await last.settled;
    const after = await reader!.get(path);
    expect(after.body).not.toBe(first.body);
    expect(after.cacheStatus).toContain("fwd-status=200");
  });

  it("a POST through an isolate whose copy is older than the data center's: the newer copy, asked for before the POST, is not served after it", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const clock = new ManualClock(Date.now());
    const config = { admin: { purgePropagationMs: 1_000 }, defaults: { honorRequestNoCache: true } };
    const testEnv = edgeEnv(origin.url, config);
    const run = crypto.randomUUID().slice(0, 8);
    const path = `/doc-${run}`;
    const [other, writer] = ["o", "w"].map((isolate) =>
      dataCenter(`dc-${run}`, testEnv, clock, { isolate: `${isolate}-${run}` }),
    );
    await useInCoordinators(testEnv, [path], clock);
    await (
      await writer!.get(path)
    ).settled;
    // Another isolate stores a newer copy (a reload); the writer's memory still holds the first.
    const newer = await other!.get(path, { headers: { "cache-control": "no-cache" } });
    expect(newer.cacheStatus).toContain("fwd-status=200");
    await newer.settled;
    const post = await writer!.get(path, { method: "POST", body: "edit" });
    expect(post.status).toBe(200);
    await post.settled;
    const after = await writer!.get(path);
    expect(after.body).not.toBe(newer.body);
    expect(after.cacheStatus).toContain("fwd-status=200");
    await after.settled;
    // The other isolate's memory: within admin.purgePropagationMs and one more request.
    clock.advance(1_000);
    await (
      await other!.get(path)
    ).settled;
    const elsewhere = await other!.get(path);
    expect(elsewhere.body).not.toBe(newer.body);
  });

  it("a POST while the isolate's Cache API write of the page is on its way: the write never lands over the POST's mark, so no other isolate of the data center serves the old page", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url, { admin: { purgePropagationMs: 1_000 } });
    const run = crypto.randomUUID().slice(0, 8);
    const path = `/doc-${run}`;
    const [writer, other] = ["w", "o"].map((isolate) =>
      dataCenter(`dc-${run}`, testEnv, clock, { isolate: `${isolate}-${run}` }),
    );
    await useInCoordinators(testEnv, [path], clock);
    // The page's write behind its answer has read what the Cache API holds (nothing) and is slow to write.
    const { release, held } = holdFirstPut(cachedUrl(testEnv, path));
    const first = await writer!.get(path);
    await held;
    const post = await writer!.get(path, { method: "POST", body: "edit" });
    expect(post.status).toBe(200);
    release();
    await Promise.all([first.settled, post.settled]);
    const after = await other!.get(path);
    expect(after.body).not.toBe(first.body);
    expect(after.cacheStatus).toContain("fwd-status=200");
  });
});
