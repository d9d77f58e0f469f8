/**
 * The data center's Cache API failing under the Worker: a read or write that rejects (a
 * platform fault, a key the cache refuses), or a cache that cannot be opened, is a miss in
 * that tier, answered through the key's coordinator; never a failed request for every visitor
 * of the key, never a purge the operator is told failed or a purge list left unread.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { ADMIN_TOKEN, adminCall, dataCenter, EDGE, edgeEnv, settle } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

const FAILED = "Cache API failed (test)";

/** From now on every Cache API cache of the test rejects `match`, `put` and `delete`. */
function failingCacheApi(): void {
  const open = caches.open.bind(caches);
  vi.spyOn(caches, "open").mockImplementation(async (name: string) => {
    const cache = await open(name);
    const failing = () => Promise.reject(new TypeError(FAILED));
    return new Proxy(cache, {
      get(target, property) {
        if (property === "match" || property === "put" || property === "delete") return failing;
        const value: unknown = Reflect.get(target, property);
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  });
}

/** The warn lines herdless logs meanwhile (kept out of the test output). */
function warnings(): string[] {
  const lines: string[] = [];
  vi.spyOn(console, "warn").mockImplementation((line: unknown) => void lines.push(String(line)));
  return lines;
}

describe("the Worker with its Cache API failing", () => {
  it("a cold key, a kept key and a POST are answered through the key's object: never a failed request, one origin request per key", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const testEnv = edgeEnv(origin.url);
    const logged = warnings();
    failingCacheApi();
    // Each request its own isolate: nothing answers from an isolate's memory.
    const visit = (path: string, init?: RequestInit) =>
      dataCenter(`dc-failing-${crypto.randomUUID()}`, testEnv, undefined, { isolate: crypto.randomUUID() }).get(
        path,
        init,
      );
    const cold = await visit("/failing-cache-api");
    expect([cold.status, cold.cacheStatus]).toEqual([200, expect.stringMatching(/fwd=uri-miss/)]);
    await settle([cold], testEnv, ["/failing-cache-api"]);
    const kept = await visit("/failing-cache-api");
    expect([kept.status, kept.body]).toEqual([200, cold.body]);
    expect(kept.cacheStatus).toMatch(/^herdless; hit/);
    const posted = await visit("/failing-cache-api", { method: "POST", body: "x" });
    expect(posted.status).toBe(200);
    await settle([kept, posted], testEnv, ["/failing-cache-api"]);
    const after = await visit("/failing-cache-api");
    expect(after.status).toBe(200);
    expect(await origin.count()).toBe(3);
    expect(logged).toContainEqual(
      expect.stringContaining("Cache API read failed: answered through the key's coordinator"),
    );
  });

  it("a cache that cannot be opened: pages are served, and the operator's purge returns 200 and is honoured", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const testEnv = edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN, purgePropagationMs: 20 } });
    warnings();
    vi.spyOn(caches, "open").mockRejectedValue(new TypeError(FAILED));
    const dc = dataCenter(`dc-unopened-${crypto.randomUUID()}`, testEnv, undefined, { ownIsolate: true });
    const first = await dc.get("/unopened");
    expect(first.status).toBe(200);
    await settle([first], testEnv, ["/unopened"]);
    expect((await dc.get("/unopened")).cacheStatus).toMatch(/^herdless; hit/);
    const purge = await adminCall(dc, "POST", "purge", { body: { urls: [`${EDGE}/unopened`] } });
    expect(purge.status).toBe(200);
    const after = await dc.get("/unopened");
    expect([after.status, after.cacheStatus]).toEqual([200, expect.stringMatching(/fwd=uri-miss/)]);
    expect(await origin.count()).toBe(2);
  });
});
