import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { dataCenter, edgeEnv, guardSnapshot, useGuard, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * Slow reads on the Worker: a client asks for a body herdless does not keep whole (relayed,
 * uncacheable, too large to store) and reads a chunk now and then, never idle long enough to
 * be cut. The origin was read only as fast as it read, so it held the origin permit for
 * `origin.streamTimeoutMs` (5 minutes), and `origin.maxConcurrency` such clients made every
 * visitor's cold miss queue, then `503`. The Node twin is test/node/slow-read.test.ts.
 */
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
  // The next test starts with the cap free: a cut or cancelled body gives its permit back behind it.
  for (let wait = 0; wait < 100 && (await guardSnapshot("global")).inFlight > 0; wait++)
    await new Promise((resolve) => setTimeout(resolve, 50));
});

const MiB = 1024 * 1024;

/** Reads one chunk of `body` every 100 ms: never idle, always slow. */
function trickle(body: ReadableStream<Uint8Array>): void {
  const reader = body.getReader();
  const every = setInterval(() => void reader.read().catch(() => undefined), 100);
  stops.push(async () => {
    clearInterval(every);
    await reader.cancel().catch(() => undefined);
  });
}

const attacks: [string, string, RequestInit][] = [
  ["relayed alone (a Cookie)", "", { headers: { cookie: "session=attacker" } }],
  ["an uncacheable answer (private)", "private", {}],
  ["a POST's answer", "", { method: "POST", body: "hi" }],
];

async function attackThenVictim(
  bodyBytes: number,
  cacheControl: string,
  init: RequestInit,
  origin: { queueTimeoutMs: number; streamIdleTimeoutMs?: number },
) {
  const id = crypto.randomUUID().slice(0, 8);
  const [file, page] = [`/file-${id}`, `/page-${id}`];
  const served = await testOrigin({
    headers: { "cache-control": "max-age=60" },
    paths: {
      [file]: { bodyBytes, headers: { "cache-control": cacheControl || "max-age=60" } },
      [page]: { body: "page" },
    },
  });
  const testEnv = edgeEnv(served.url, { origin: { maxConcurrency: 1, ...origin } });
  // One guard for the deployment: the edge's relays and the coordinators' fills both count in it.
  await useGuard(testEnv, "global", systemClock);
  await useInCoordinators(testEnv, [file, page], systemClock, "global");
  const dc = dataCenter(`slow-read-${id}`, testEnv, systemClock, { ownIsolate: true });
  // As many attackers as the cap: one.
  const attacker = await dc.fetch(file, init);
  expect(attacker.response.status).toBe(200);
  trickle(attacker.response.body!);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const started = Date.now();
  const victim = await dc.get(page);
  return { victim, waitedMs: Date.now() - started };
}

describe("slow readers of bodies herdless does not keep (Worker)", () => {
  it.each(attacks)(
    "a reader trickling %s that fits the read-ahead holds no origin permit: the victim's cold miss is served at once",
    { timeout: 30_000 },
    async (_, cacheControl, init) => {
      const { victim, waitedMs } = await attackThenVictim(3 * MiB, cacheControl, init, { queueTimeoutMs: 2_000 });
      expect(victim.status).toBe(200);
      expect(victim.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200/);
      expect(waitedMs).toBeLessThan(1_500);
    },
  );

  it.each([...attacks, ["shared but too large to keep", "", {}] as [string, string, RequestInit]])(
    "a reader trickling %s past the read-ahead is cut once a cold miss queues behind it: the victim is served",
    { timeout: 30_000 },
    async (_, cacheControl, init) => {
      // The cut comes within two looks of 2 s; the queue's 10 s leave room for a loaded machine.
      const { victim } = await attackThenVictim(64 * MiB, cacheControl, init, {
        queueTimeoutMs: 10_000,
        streamIdleTimeoutMs: 2_000,
      });
      expect(victim.status).toBe(200);
      expect(victim.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200/);
    },
  );
});
