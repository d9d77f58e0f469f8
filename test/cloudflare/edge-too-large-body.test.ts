import { describe, expect, it } from "vitest";
import { ManualClock, systemClock, type Clock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators, type DataCenter } from "./edge-harness.ts";
import { expectedHash, finish } from "./large-body.ts";
import { testOrigin, type TestOrigin } from "./test-origin.ts";

// The half the origin sends first (1.5 MB) fits within the limit, the whole body does not:
// a coordinator reading up to the limit before answering would wait on the held half.
const LIMIT = 2_000_000;
const BYTES = 3_000_000;
/** Real time a client may wait for its first bytes while the origin holds back the second half. */
const FIRST_BYTES_MS = 10_000;
const CLIENTS = 10;

/**
 * `CLIENTS` concurrent requests for `path` spread over `dcs` while the origin holds back the
 * second half of a body above cache.maxEntryBytes: every client must have its first bytes by
 * then, from the one origin request; then every body completes.
 */
async function herdWhileHalfHeld(origin: TestOrigin, dcs: DataCenter[], path: string, before: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no first bytes within ${FIRST_BYTES_MS} ms while the origin held back the second half`)),
      FIRST_BYTES_MS,
    );
  });
  const herd = Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const { response, settled } = await dcs[i % dcs.length]!.fetch(path);
      const reader = response.body!.getReader();
      const first = await reader.read();
      return {
        status: response.status,
        cacheStatus: response.headers.get("cache-status") ?? "",
        reader,
        first: first.value ?? new Uint8Array(),
        settled,
      };
    }),
  );
  const opened = await Promise.race([herd, late]).finally(() => {
    if (timer !== undefined) clearTimeout(timer);
  });
  expect(opened.map((o) => o.status)).toEqual(opened.map(() => 200));
  expect(opened.filter((o) => o.first.byteLength === 0)).toEqual([]);
  expect(await origin.stats()).toMatchObject({ count: before + 1, held: 1 });
  // One client led the fetch, every other joined it; none of them is told the body is stored.
  expect(opened.filter((o) => !/; collapsed; /.test(o.cacheStatus))).toHaveLength(1);
  expect(opened.filter((o) => !/detail=too-large$/.test(o.cacheStatus))).toEqual([]);

  await origin.release();
  const bodies = await Promise.all(opened.map((o) => finish(o.reader, o.first)));
  const want = await expectedHash(BYTES);
  expect(bodies.filter((b) => b.bytes !== BYTES || b.hash !== want)).toEqual([]);
  await Promise.all(opened.map((o) => o.settled));
  expect(await origin.count()).toBe(before + 1);
}

function setUp(origin: TestOrigin, path: string, clock: Clock) {
  const testEnv = edgeEnv(origin.url, { cache: { maxEntryBytes: LIMIT } });
  return { testEnv, ready: useInCoordinators(testEnv, [path], clock) };
}

describe("a body above cache.maxEntryBytes in workerd collapses and streams, and is not stored", () => {
  it(
    "10 concurrent cold requests over 2 data centers: 1 origin request, every client has bytes while the origin holds back the second half, 10 identical complete bodies",
    { timeout: 60_000 },
    async () => {
      const origin = await testOrigin({ bodyBytes: BYTES, mode: "half" });
      const { testEnv, ready } = setUp(origin, "/big", systemClock);
      await ready;
      await herdWhileHalfHeld(origin, dataCenters(2, testEnv, systemClock, { ownIsolate: true }), "/big", 0);
      // Not stored: the next request goes to the origin again.
      await origin.set({ mode: "up" });
      const [dc] = dataCenters(1, testEnv, systemClock, { ownIsolate: true });
      const { response } = await dc!.fetch("/big");
      expect(response.headers.get("cache-status")).toMatch(/^herdless; fwd=uri-miss; .*detail=too-large$/);
      expect((await response.arrayBuffer()).byteLength).toBe(BYTES);
      expect(await origin.count()).toBe(2);
    },
  );

  it(
    "with a stale copy that stale-if-error could serve (bodies that fit are then read whole first), the new too-large body still streams to every client before the origin finishes",
    { timeout: 60_000 },
    async () => {
      const clock = new ManualClock(Date.now());
      const origin = await testOrigin({
        body: "small",
        headers: { "cache-control": "max-age=1, stale-if-error=600" },
      });
      const { testEnv, ready } = setUp(origin, "/grown", clock);
      await ready;
      const dcs = dataCenters(2, testEnv, clock, { ownIsolate: true });
      expect((await dcs[0]!.get("/grown")).body).toBe("small");
      clock.advance(5_000);
      await origin.set({ body: undefined, bodyBytes: BYTES, mode: "half" });
      await herdWhileHalfHeld(origin, dcs, "/grown", 1);
    },
  );
});
