import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { dataCenter, edgeEnv, guardSnapshot, useGuard, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * Slow uploads on the Worker: an attacker starts POSTs and sends their bodies slowly, or not at
 * all. Each upload reserved 64 KiB of the isolate's 8 MiB upload budget on arrival, so 128 POSTs
 * that sent headers only spent it, and every upload after them, even a bodiless one, was
 * streamed and held an origin permit for `origin.timeoutMs` while it waited on its client; a
 * large upload that stalled past its first 64 KiB held one as long. The victim's cold miss got
 * `503 queue-timeout`. The Node twin is test/node/upload-abuse.test.ts.
 */
const clients: ReadableStreamDefaultController<Uint8Array>[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) {
    try {
      client.error(new Error("client gone"));
    } catch {
      // Already over.
    }
  }
  // The next test starts with the cap free.
  for (let wait = 0; wait < 100 && (await guardSnapshot("global")).inFlight > 0; wait++)
    await new Promise((resolve) => setTimeout(resolve, 50));
});

/** A client's body that sends `bytes` at once, then nothing more. */
function stalledBody(bytes: number): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      clients.push(controller);
      if (bytes > 0) controller.enqueue(new Uint8Array(bytes));
    },
  });
}

async function setup(origin: { maxConcurrency: number; queueTimeoutMs: number }) {
  const id = crypto.randomUUID().slice(0, 8);
  const page = `/page-${id}`;
  const served = await testOrigin({ headers: { "cache-control": "max-age=60" }, readBody: true });
  const testEnv = edgeEnv(served.url, { origin });
  // One guard for the deployment: the edge's relays and the coordinators' fills both count in it.
  await useGuard(testEnv, "global", systemClock);
  await useInCoordinators(testEnv, [page], systemClock, "global");
  const dc = dataCenter(`slow-upload-${id}`, testEnv, systemClock, { ownIsolate: true });
  const post = (path: string, body: ReadableStream<Uint8Array>) =>
    dc.fetch(path, { method: "POST", body, headers: { "content-type": "application/octet-stream" } });
  return { dc, page, served, post };
}

describe("slow uploads (Worker)", () => {
  it(
    "POSTs that send headers only spend no upload budget, however many: bodiless POSTs after them hold no permit, and the victim is served at once",
    { timeout: 30_000 },
    async () => {
      const { dc, page, served, post } = await setup({ maxConcurrency: 4, queueTimeoutMs: 2_000 });
      // Past the 128 uploads the budget once reserved room for: headers, then nothing.
      for (let i = 0; i < 130; i++) void post(`/reserve${i}`, stalledBody(0)).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 200));
      // Then more than the cap of POSTs that send no body byte either.
      for (let i = 0; i < 12; i++) void post(`/tiny${i}`, stalledBody(0)).catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 200));
      const started = Date.now();
      const victim = await dc.get(page);
      expect(victim.status).toBe(200);
      expect(victim.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200/);
      expect(Date.now() - started).toBeLessThan(1_500);
      // The origin never heard of the uploads.
      expect(await served.count()).toBe(1);
    },
  );

  it(
    "a large upload that stalls on its permit while a cold miss queues is cut with 408: the victim is served before its queue timeout",
    { timeout: 30_000 },
    async () => {
      const { dc, page, served, post } = await setup({ maxConcurrency: 1, queueTimeoutMs: 3_000 });
      // As many as the cap: past what is read before the permit (64 KiB), then nothing.
      const upload = post("/upload", stalledBody(64 * 1024 + 1));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      const victim = await dc.get(page);
      expect(victim.status).toBe(200);
      expect(victim.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200/);
      expect(Date.now() - started).toBeLessThan(3_000);
      const cut = (await upload).response;
      expect(cut.status).toBe(408);
      expect(await cut.text()).toContain("others waited for");
      // The origin's request was broken off: it never read the first 64 KiB as the whole body.
      await served.waitFor({ inFlight: 0 });
      expect(await served.stats()).toMatchObject({ count: 2, aborted: 1 });
    },
  );

  it(
    "a client that leaves mid-upload breaks the origin's request off: the origin never reads the part as the whole body",
    { timeout: 30_000 },
    async () => {
      const { served, post } = await setup({ maxConcurrency: 1, queueTimeoutMs: 3_000 });
      const upload = post("/upload", stalledBody(64 * 1024 + 1));
      await served.waitFor({ inFlight: 1 });
      // workerd ends a chunked request body cleanly when its stream errors: the origin answered 200.
      clients.splice(0)[0]!.error(new Error("client gone"));
      expect((await upload).response.status).toBe(408);
      await served.waitFor({ inFlight: 0 });
      expect(await served.stats()).toMatchObject({ count: 1, aborted: 1 });
    },
  );
});
