/**
 * A client that hangs up before its answer is ready (browsers cancel requests all the time)
 * leaves nothing the isolate's other requests wait on: its share of a download too large to
 * keep is let go, and the others get every byte at once.
 */
import { createExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../src/cloudflare/worker.ts";
import { edgeEnv, guardSnapshot, useGuardConfig } from "./edge-harness.ts";
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

describe("a client relayed alone that hangs up while it waits for a permit", () => {
  it("is withdrawn: the origin never gets work nobody waits for", async () => {
    const origin = await testOrigin({ mode: "hold", headers: { "cache-control": "private" } });
    const env = edgeEnv(origin.url, { origin: { maxConcurrency: 1 } });
    // The edge's relays ask the deployment's guard object: given this cap (the last test of the file).
    await useGuardConfig(env, "global");
    const base = `https://edge.test/account-${crypto.randomUUID()}`;
    const relayed = (user: string, signal?: AbortSignal) =>
      worker.fetch(
        new Request(`${base}?${user}`, { headers: { cookie: `session=${user}` }, ...(signal ? { signal } : {}) }),
        env,
        createExecutionContext(),
      );
    // A signed-in visitor's slow page holds the one permit; five reloads queue behind it and are cut off.
    const first = relayed("first");
    await origin.waitFor({ held: 1 });
    const gone = ["a", "b", "c", "d", "e"].map((user) => {
      const hangUp = new AbortController();
      const answer = relayed(user, hangUp.signal);
      return { hangUp, answer };
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    for (const { hangUp } of gone) hangUp.abort();
    await Promise.all(gone.map(({ answer }) => answer.catch(() => undefined)));
    // Out of the guard object's queue at once, not when their turn comes: their places are free for others.
    for (let tries = 0; (await guardSnapshot("global")).queued > 0 && tries < 50; tries++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await guardSnapshot("global")).toMatchObject({ inFlight: 1, queued: 0 });
    await origin.set({ mode: "up" });
    await origin.release();
    expect((await first).status).toBe(200);
    expect((await relayed("victim")).status).toBe(200);
    // The first page and the victim's: none of the five abandoned requests reached the origin.
    expect(await origin.count()).toBe(2);
  });
});
