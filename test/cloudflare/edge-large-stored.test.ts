import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { expectedHash, finish } from "./large-body.ts";
import { testOrigin } from "./test-origin.ts";

describe("large stored bodies in workerd", () => {
  // A stored body comes back from the key's object as a stream beside the answer when it is
  // large: one RPC value is at most 32 MiB, and cache.maxEntryBytes may be up to 128 MiB.
  for (const { bytes, config, what } of [
    { bytes: 26_214_400, config: {}, what: "25 MiB (the default cache.maxEntryBytes)" },
    { bytes: 40_000_000, config: { cache: { maxEntryBytes: 64 * 1024 * 1024 } }, what: "40 MB (above one RPC value)" },
  ]) {
    it(
      `a body of ${what} is stored once and served whole to a data center that never saw it, from the key's object`,
      {
        timeout: 90_000,
      },
      async () => {
        // A path per case: the key's object (and what it stored) outlives the test.
        const path = `/stored-${bytes}`;
        const origin = await testOrigin({ bodyBytes: bytes, headers: { "cache-control": "max-age=600" } });
        const testEnv = edgeEnv(origin.url, config);
        await useInCoordinators(testEnv, [path], systemClock);
        const [first, second] = dataCenters(2, testEnv, systemClock, { ownIsolate: true });
        const want = { hash: await expectedHash(bytes), bytes };
        const filled = await first!.fetch(path);
        // Streamed as it arrives: not yet stored when the head goes out, so not said to be (RFC 9211 §2.5).
        expect(filled.response.headers.get("cache-status")).toMatch(
          /^herdless; fwd=uri-miss; fwd-status=200; ttl=\d+$/,
        );
        expect(await finish(filled.response.body!.getReader(), new Uint8Array())).toEqual(want);
        await filled.settled;
        const { response } = await second!.fetch(path);
        // From the key's object, not the origin: a hit (RFC 9211 §2.1).
        expect(response.headers.get("cache-status")).toMatch(/^herdless; hit; ttl=\d+$/);
        expect(await finish(response.body!.getReader(), new Uint8Array())).toEqual(want);
        expect(await origin.count()).toBe(1);
      },
    );
  }
});
