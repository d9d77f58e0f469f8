/**
 * An expired page whose copy stale-if-error covers, while every origin permit is taken: the
 * copy answers at once. It used to wait in the guard's queue for up to origin.queueTimeoutMs
 * (10 s) and only then be served stale, so a few slow uncacheable requests kept every such
 * page waiting; with the queue full, the same copy was served at once.
 */
import { afterEach, describe, expect, it } from "vitest";
import { herdless, servingOrigin } from "./attack-kit.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** `/slow` holds its answer until `free()`; `/pop` answers at once with `cacheControl`. */
async function busyOrigin(cacheControl: string) {
  let free!: () => void;
  const gate = new Promise<void>((resolve) => (free = resolve));
  const seen: string[] = [];
  const url = await servingOrigin((req, res) => {
    seen.push(req.url ?? "");
    req.resume();
    if (req.url?.startsWith("/slow")) {
      void gate.then(() => res.end("slow"));
      return;
    }
    res.writeHead(200, { "cache-control": cacheControl, "content-type": "text/plain" });
    res.end(`page ${seen.length}`);
  }, cleanup);
  return { url, free, seen: (path: string) => seen.filter((p) => p === path).length };
}

async function get(base: string, path: string, headers: Record<string, string> = {}) {
  const started = performance.now();
  const res = await fetch(`${base}${path}`, { headers });
  return {
    status: res.status,
    body: await res.text(),
    cacheStatus: res.headers.get("cache-status") ?? "",
    ms: performance.now() - started,
  };
}

describe("an expired page with a stale-if-error copy while the origin's permits are all taken", () => {
  it("is answered from its copy at once, and renewed by the first request that finds a permit free", async () => {
    const origin = await busyOrigin("max-age=1, stale-if-error=600");
    const cache = await herdless(origin.url, { origin: { maxConcurrency: 1, queueTimeoutMs: 10_000 } });
    cleanup.push(() => cache.close());
    expect((await get(cache.base, "/pop")).body).toBe("page 1");
    cache.clock.advance(2_000);
    // The attacker's slow, uncacheable request takes the one permit.
    const slow = get(cache.base, "/slow", { cookie: "session=attacker" });
    while (origin.seen("/slow") === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const victim = await get(cache.base, "/pop");
    expect(victim.status).toBe(200);
    expect(victim.body).toBe("page 1");
    expect(victim.cacheStatus).toContain("fwd=stale");
    expect(victim.cacheStatus).toContain("detail=origin-busy");
    expect(victim.ms).toBeLessThan(2_000);
    expect(origin.seen("/pop")).toBe(1);
    origin.free();
    await slow;
    // The permit is free again: the next request renews the page.
    const renewed = await get(cache.base, "/pop");
    expect(renewed.body).not.toBe("page 1");
    expect(origin.seen("/pop")).toBe(2);
  });

  it("without stale-if-error still waits for a permit and gets the fresh page", async () => {
    const origin = await busyOrigin("max-age=1");
    const cache = await herdless(origin.url, { origin: { maxConcurrency: 1, queueTimeoutMs: 10_000 } });
    cleanup.push(() => cache.close());
    await get(cache.base, "/pop");
    cache.clock.advance(2_000);
    const slow = get(cache.base, "/slow", { cookie: "session=a" });
    while (origin.seen("/slow") === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const waiting = get(cache.base, "/pop");
    await new Promise((resolve) => setTimeout(resolve, 100));
    origin.free();
    await slow;
    const answer = await waiting;
    expect(answer.body).not.toBe("page 1");
    expect(answer.cacheStatus).not.toContain("origin-busy");
    expect(origin.seen("/pop")).toBe(2);
  });
});
