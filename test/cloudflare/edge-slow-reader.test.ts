import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { dataCenter, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const BYTES = 8 * 1024 * 1024;

describe("resource exhaustion (Worker)", () => {
  it(
    "slow reader: a client that asks for a large file and never reads cannot stall the victim's download of it",
    { timeout: 60_000 },
    async () => {
      // Past cache.maxEntryBytes the body is streamed, not kept: the origin is read only a window
      // ahead of the slowest reader, and a reader that holds the others back is cut off.
      const origin = await testOrigin({ bodyBytes: BYTES, mode: "half" });
      const testEnv = edgeEnv(origin.url, {
        cache: { maxEntryBytes: 1024 * 1024 },
        origin: { streamIdleTimeoutMs: 500 },
      });
      const p = `/big-${crypto.randomUUID().slice(0, 8)}`;
      await useInCoordinators(testEnv, [p], systemClock);
      const dc = dataCenter("slow-reader", testEnv, systemClock, { ownIsolate: true });
      const attacker = await dc.fetch(p); // asks, then never reads its body
      const victim = await dc.fetch(p);
      await origin.release();
      let bytes = 0;
      const reader = victim.response.body!.getReader();
      for (let read = await reader.read(); !read.done; read = await reader.read()) bytes += read.value.byteLength;
      expect(victim.response.headers.get("cache-status")).toMatch(/collapsed/);
      expect(bytes).toBe(BYTES);
      await attacker.response.body!.cancel().catch(() => undefined);
      expect(await origin.count()).toBe(1);
    },
  );

  it.each([
    ["that shares a fill", {}],
    ["relayed alone (a Cookie)", { headers: { cookie: "session=attacker" } }],
  ])(
    "slow reader: a client %s that asks for a large file and never reads cannot hold the origin cap: the victim's cold miss is served",
    { timeout: 60_000 },
    async (_, init: RequestInit) => {
      const page = `/page-${crypto.randomUUID().slice(0, 8)}`;
      const origin = await testOrigin({ bodyBytes: 8 * BYTES, paths: { [page]: { body: "page", bodyBytes: 4 } } });
      const testEnv = edgeEnv(origin.url, {
        cache: { maxEntryBytes: 1024 * 1024 },
        origin: { maxConcurrency: 1, queueTimeoutMs: 5_000, streamIdleTimeoutMs: 500 },
      });
      const p = `/big-${crypto.randomUUID().slice(0, 8)}`;
      await useInCoordinators(testEnv, [p, page], systemClock);
      const dc = dataCenter(`cap-holder-${page}`, testEnv, systemClock, { ownIsolate: true });
      const attacker = await dc.fetch(p, init); // holds the only origin permit while it reads nothing
      const victim = await dc.get(page);
      expect(victim.status).toBe(200);
      expect(victim.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200/);
      await attacker.response.body!.cancel().catch(() => undefined);
    },
  );
});
