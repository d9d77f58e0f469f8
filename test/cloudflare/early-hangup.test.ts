/**
 * A client that hangs up before its answer is ready (browsers cancel requests all the time)
 * leaves nothing the isolate's other requests wait on: its share of a download too large to
 * keep is let go, and the others get every byte at once.
 */
import { createExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../src/cloudflare/worker.ts";
import { edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const SIZE = 3 * 1024 * 1024; // past maxEntryBytes below: shared as it streams, never kept

describe("a client that hangs up before the origin's head", () => {
  it("never holds back the download its isolate shared: the request that stayed gets every byte at once", async () => {
    const origin = await testOrigin({ mode: "hold", bodyBytes: SIZE, headers: { "cache-control": "max-age=60" } });
    const env = edgeEnv(origin.url, { cache: { maxEntryBytes: 1024 * 1024 } });
    const url = `https://edge.test/hangup-${crypto.randomUUID()}.iso`;
    const stayed = worker.fetch(new Request(url), env, createExecutionContext());
    await origin.waitFor({ held: 1 });
    const hangUp = new AbortController();
    const gone = worker.fetch(new Request(url, { signal: hangUp.signal }), env, createExecutionContext());
    hangUp.abort();
    await origin.set({ mode: "up" });
    await origin.release();
    await gone;
    const started = performance.now();
    const body = await (await stayed).arrayBuffer();
    expect(body.byteLength).toBe(SIZE);
    // Held back, it waited for the other's reader until the laggard cut (30 s).
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(await origin.count()).toBe(1);
  });
});
