import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { expectedHash, finish } from "./large-body.ts";
import { testOrigin } from "./test-origin.ts";

const BYTES = 20_000_000;
const DCS = 4;

describe("a large body herd in workerd, 4 data centers", () => {
  // 50 × 20 MB through one workerd process on a loaded 2-core machine: 35-60 s seen. Each
  // isolate reads the body once from the key's object (one RPC stream per isolate, not one
  // per request) and the object keeps the key's lease while the body still flows.
  it(
    "50 concurrent cold requests for a 20 MB body: 1 origin request, every client has bytes while the origin holds back the second half, 50 identical complete bodies, then served from every data center",
    { timeout: 150_000 },
    async () => {
      const origin = await testOrigin({ bodyBytes: BYTES, mode: "half" });
      const testEnv = edgeEnv(origin.url);
      await useInCoordinators(testEnv, ["/big"], systemClock);
      const dcs = dataCenters(DCS, testEnv, systemClock, { ownIsolate: true });
      const opened = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const { response, settled } = await dcs[i % DCS]!.fetch("/big");
          const reader = response.body!.getReader();
          const first = await reader.read();
          return { status: response.status, reader, first: first.value ?? new Uint8Array(), settled };
        }),
      );
      // Every client has its first bytes while the origin still holds back the second half.
      expect(opened.map((o) => o.status)).toEqual(opened.map(() => 200));
      expect(opened.filter((o) => o.first.byteLength === 0)).toEqual([]);
      expect(await origin.stats()).toMatchObject({ count: 1, held: 1 });

      await origin.release();
      const bodies = await Promise.all(opened.map((o) => finish(o.reader, o.first)));
      const want = await expectedHash(BYTES);
      expect(bodies.filter((b) => b.bytes !== BYTES || b.hash !== want)).toEqual([]);
      await Promise.all(opened.map((o) => o.settled));
      expect(await origin.count()).toBe(1);
      // Stored: each data center answers the next request from its own copy, and one that never
      // saw the herd from the key's object, without the origin.
      const [elsewhere] = dataCenters(1, testEnv, systemClock, { ownIsolate: true });
      for (const dc of [...dcs, elsewhere!]) {
        const { response } = await dc.fetch("/big");
        expect(response.headers.get("cache-status")).toMatch(/^herdless; hit; ttl=\d+$/);
        const reader = response.body!.getReader();
        const first = await reader.read();
        expect(await finish(reader, first.value ?? new Uint8Array())).toEqual({ hash: want, bytes: BYTES });
      }
      expect(await origin.count()).toBe(1);
    },
  );
});
