import { afterEach, describe, expect, it, vi } from "vitest";
import { deploy, send, type Deployment } from "./deployment.ts";
import { startGatedOrigin, type GatedOrigin } from "./gated-origin.ts";

/**
 * The breaker in a real outage, on one process and on a fleet of three sharing Redis: the
 * origin refuses every connection; connections are counted where they arrive.
 */

const PROBE_INTERVAL_MS = 5_000;
const THRESHOLD = 3;
const KEYS = Array.from({ length: 10 }, (_, i) => `/page${i}`);

let origin: GatedOrigin | undefined;
let deployment: Deployment | undefined;
afterEach(async () => {
  await deployment?.close();
  await origin?.close();
});

describe.each(["node", "fleet"] as const)("the origin refuses every connection (%s)", (kind) => {
  it(
    "the breaker opens after breaker.failureThreshold refused connections, one probe per interval reaches the origin, and recovery refreshes every key once",
    { timeout: 60_000 },
    async () => {
      origin = await startGatedOrigin("max-age=10, stale-if-error=600");
      deployment = await deploy(kind, origin.url, {
        origin: { timeoutMs: 2_000 },
        breaker: {
          failureThreshold: THRESHOLD,
          minFailingKeys: 3,
          windowMs: 10_000,
          probeIntervalMs: PROBE_INTERVAL_MS,
          // Long backoffs: a key that probed during the outage waits 10–20 s on its own.
          backoffBaseMs: 20_000,
        },
      });
      const { clock, urls } = deployment;
      for (const key of KEYS) for (const url of urls) expect((await send(url, key)).status).toBe(200);
      expect(origin.requests()).toBe(KEYS.length);

      origin.set("refuse");
      clock.advance(11_000);
      // Cold keys, one after the other, spread over the members: failureThreshold
      // connections from as many keys open it, within the window (the clock stands still).
      const before = origin.connections();
      const opening: number[] = [];
      for (let i = 0; i < 5; i++) opening.push((await send(urls[i % urls.length]!, `/cold${i}`)).status);
      expect(opening).toEqual([502, 502, 502, 503, 503]);
      expect(origin.connections() - before).toBe(THRESHOLD);

      // Open: every interval exactly one probe connection for the whole deployment; every
      // cached key is served its stored copy; every cold key is refused with Retry-After.
      let cachedErrors = 0;
      for (let interval = 0; interval < 5; interval++) {
        clock.advance(PROBE_INTERVAL_MS);
        const at = origin.connections();
        if (interval === 4) {
          // The last probe is a cached key's (one the bursts never ask): its own backoff, 10–20 s,
          // runs past the close below, by less than half an interval in a quarter of the runs,
          // which a key checked a while after the close must not wait out either (key-backoff.ts).
          expect(await send(urls.at(-1)!, KEYS[0]!)).toMatchObject({ status: 200, body: `GET ${KEYS[0]} v1` });
          expect(origin.connections() - at).toBe(1);
        }
        const burst = await Promise.all(
          Array.from({ length: 30 }, (_, i) => {
            const path = i % 2 ? KEYS[i % KEYS.length]! : `/cold-${interval}-${i}`;
            return send(urls[i % urls.length]!, path).then((answer) => ({ path, answer }));
          }),
        );
        expect(origin.connections() - at).toBe(1);
        for (const { path, answer } of burst) {
          if (KEYS.includes(path)) {
            if (answer.status !== 200 || answer.body !== `GET ${path} v1`) cachedErrors++;
          } else if (answer.status !== 502) {
            expect(answer).toMatchObject({ status: 503, retryAfter: expect.stringMatching(/^\d+$/) });
            expect(answer.cacheStatus).toMatch(/detail=breaker-open$/);
          }
        }
      }
      expect(cachedErrors).toBe(0);

      // The origin comes back: the next probe (a cold key, the cached ones back off) closes
      // the breaker, and within one more probe interval every key that was served stale is
      // refreshed, however long its own backoff, with one origin request per key for the deployment.
      origin.set("up");
      origin.bump();
      clock.advance(PROBE_INTERVAL_MS);
      expect((await send(urls[0]!, "/cold-probe")).status).toBe(200);
      // The probe's permit goes back (and closes the breaker) behind its answer; the next
      // interval runs from that close, so the manual clock moves only once it is recorded.
      await vi.waitFor(async () => {
        for (const stack of deployment!.stacks) expect((await stack.guard.snapshot()).breaker).toBe("closed");
      });
      origin.resetRequests();
      clock.advance(PROBE_INTERVAL_MS);
      for (const key of KEYS)
        for (const url of urls) expect(await send(url, key)).toMatchObject({ status: 200, body: `GET ${key} v2` });
      expect(KEYS.map((key) => origin!.requests(key))).toEqual(KEYS.map(() => 1));
      expect(origin.requests()).toBe(KEYS.length);
    },
  );
});
