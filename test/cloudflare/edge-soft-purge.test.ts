import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import type { PurgeCommand } from "../../src/core/admin/purge.ts";
import {
  ADMIN_TOKEN,
  adminCall,
  dataCenter,
  dataCenters,
  EDGE,
  edgeEnv,
  settle,
  useGuardConfig,
  useInCoordinators,
  type Answer,
  type DataCenter,
} from "./edge-harness.ts";
import type { OriginBehaviour } from "./origin-protocol.ts";
import { testOrigin, type TestOrigin } from "./test-origin.ts";

const DCS = 4;
const ADMIN = { admin: { token: ADMIN_TOKEN, purgePropagationMs: 20 } };
const SOFT_STALE = /^herdless; hit; ttl=-?\d+; detail=stale-while-revalidate$/;
/** Fresh: a hit with time to live left and no stale detail (the exact seconds depend on how long the test has run). */
const FRESH_HIT = /^herdless; hit; ttl=\d+$/;

interface Setup {
  origin: TestOrigin;
  dcs: DataCenter[];
  purge(command: PurgeCommand): Promise<void>;
  /** Waits for the revalidations the answers started, in the edges and the coordinators. */
  settleAll(answers: Answer[]): Promise<void>;
}

/** Four data centers (own caches, own isolates) holding `paths`, one origin request each. */
async function filled(
  paths: string[],
  behaviour: (path: string) => Partial<OriginBehaviour>,
  config: { origin?: { maxConcurrency: number } } = {},
): Promise<Setup> {
  const perPath = Object.fromEntries(paths.map((path) => [path, behaviour(path)]));
  const origin = await testOrigin({ paths: perPath });
  const testEnv = edgeEnv(origin.url, { ...ADMIN, ...config });
  const guardName = `guard-${crypto.randomUUID()}`;
  await useGuardConfig(testEnv, guardName);
  await useInCoordinators(testEnv, paths, systemClock, guardName);
  const dcs = dataCenters(DCS, testEnv, undefined, { ownIsolate: true });
  for (const path of paths) for (const dc of dcs) expect((await dc.get(path)).status).toBe(200);
  for (const path of paths) for (const dc of dcs) expect((await dc.get(path)).cacheStatus).toMatch(FRESH_HIT);
  expect(await origin.count()).toBe(paths.length);
  const admin = dataCenter(`admin-${crypto.randomUUID()}`, testEnv, undefined, { ownIsolate: true });
  return {
    origin,
    dcs,
    async purge(command) {
      const answer = await adminCall(admin, "POST", "purge", { body: { ...command, soft: true } });
      expect(answer.status).toBe(200);
    },
    settleAll: (answers) => settle(answers, testEnv, paths),
  };
}

/** Every data center at once: each serves `body` marked stale, without waiting on the origin. */
async function expectStaleEverywhere(s: Setup, path: string, body: string) {
  const answers = await Promise.all(s.dcs.map((dc) => dc.get(path)));
  for (const answer of answers) {
    expect(answer).toMatchObject({ status: 200, body });
    expect(answer.cacheStatus).toMatch(SOFT_STALE);
  }
  return answers;
}

async function expectHitEverywhere(s: Setup, path: string, body: string): Promise<void> {
  for (const dc of s.dcs) {
    const answer = await dc.get(path);
    expect(answer).toMatchObject({ status: 200, body });
    expect(answer.cacheStatus).toMatch(FRESH_HIT);
  }
}

describe("soft purge across four data centers", () => {
  it("by URL, etag unchanged: every data center serves the old body stale; 1 revalidation in total, a 304; then hits everywhere", async () => {
    const s = await filled(["/soft/page"], () => ({ headers: { "cache-control": "max-age=60" }, etag: '"v1"' }));
    await s.purge({ urls: [`${EDGE}/soft/page`] });
    const answers = await expectStaleEverywhere(s, "/soft/page", "/soft/page #1");
    await s.settleAll(answers);
    const { requests } = await s.origin.stats();
    expect(requests).toHaveLength(2);
    // The revalidation was conditional on the stored etag, which still matched: the origin answered 304.
    expect(requests[1]?.headers["if-none-match"]).toBe('"v1"');
    await expectHitEverywhere(s, "/soft/page", "/soft/page #1");
    expect(await s.origin.count()).toBe(2);
  });

  it("by tag, content changed: stale everywhere, 1 origin request in total, then the new body as a hit everywhere; untagged keys untouched", async () => {
    const s = await filled(["/soft/a", "/soft/b"], (path) => ({
      headers: { "cache-control": "max-age=60", "cache-tag": path === "/soft/a" ? "news" : "sports" },
    }));
    await s.purge({ tags: ["news"] });
    const answers = await expectStaleEverywhere(s, "/soft/a", "/soft/a #1");
    await s.settleAll(answers);
    expect(await s.origin.count()).toBe(3);
    await expectHitEverywhere(s, "/soft/a", "/soft/a #3");
    await expectHitEverywhere(s, "/soft/b", "/soft/b #2");
    expect(await s.origin.count()).toBe(3);
  });

  it("everything over 12 keys, 48 concurrent requests: 48 stale answers, exactly 12 origin requests (one per key), at most maxConcurrency = 2 in flight", async () => {
    const paths = Array.from({ length: 12 }, (_, i) => `/soft/all/${i}`);
    const s = await filled(paths, () => ({ headers: { "cache-control": "max-age=60" } }), {
      origin: { maxConcurrency: 2 },
    });
    // Count from here, with origin answers slow enough for the revalidations to overlap.
    await s.origin.reset();
    await s.origin.set({ headers: { "cache-control": "max-age=60" }, delayMs: 30 });
    await s.purge({ all: true });
    const answers = await Promise.all(
      s.dcs.flatMap((dc) => paths.map((path) => dc.get(path).then((answer) => ({ path, answer })))),
    );
    expect(answers).toHaveLength(48);
    for (const { path, answer } of answers) {
      expect(answer.body).toMatch(new RegExp(`^${path} #\\d+$`));
      expect(answer.cacheStatus).toMatch(SOFT_STALE);
    }
    await s.settleAll(answers.map((a) => a.answer));
    const stats = await s.origin.stats();
    expect(stats.count).toBe(12);
    expect(stats.requests.map((r) => r.path).sort()).toEqual([...paths].sort());
    // The cap held, and was reached: the revalidations did overlap.
    expect(stats.maxInFlight).toBe(2);
    for (const path of paths) {
      const fresh = stats.requests.findIndex((r) => r.path === path) + 1;
      await expectHitEverywhere(s, path, `${path} #${fresh}`);
    }
    expect(await s.origin.count()).toBe(12);
  });

  it.each([
    ["a small page", undefined],
    ["a page whose body streams (200 KB)", 200_000],
  ])(
    "%s being fetched when the operator soft-purges it: visitors after the purge returned that join that fetch get its page marked stale, never fresh; one revalidation, then the new page everywhere",
    async (_, bodyBytes) => {
      const origin = await testOrigin({
        headers: { "cache-control": "max-age=60" },
        mode: "hold",
        ...(bodyBytes ? { bodyBytes } : {}),
      });
      const testEnv = edgeEnv(origin.url, ADMIN);
      const path = `/soft-inflight-${crypto.randomUUID().slice(0, 8)}`;
      const guardName = `guard-${crypto.randomUUID()}`;
      await useGuardConfig(testEnv, guardName);
      await useInCoordinators(testEnv, [path], systemClock, guardName);
      const dcs = dataCenters(2, testEnv, undefined, { ownIsolate: true });
      const first = dcs[0]!.get(path);
      await origin.waitFor({ held: 1 });
      const admin = dataCenter(`admin-${crypto.randomUUID()}`, testEnv, undefined, { ownIsolate: true });
      const purged = await adminCall(admin, "POST", "purge", { body: { urls: [`${EDGE}${path}`], soft: true } });
      expect(purged.status).toBe(200);
      // One in the first data center's isolate (its flight), one in another (the key's object).
      const joiners = [dcs[0]!.get(path), dcs[1]!.get(path)];
      // Real time for ordering only: the visitors reach the running fetch before it answers.
      await new Promise((resolve) => setTimeout(resolve, 200));
      // The fetch answers; the revalidation the soft purge starts is held until the visitors
      // are answered: a visitor slower than the wait above (a loaded machine) finds the landed
      // copy, soft-purged, not the one that revalidation brings, fresh from after the purge.
      await origin.release();
      const led = await first;
      expect(led.cacheStatus).not.toContain("stale");
      const joined = await Promise.all(joiners);
      for (const answer of joined) {
        expect(answer.body).toBe(led.body);
        expect(answer.cacheStatus).toContain("detail=stale-while-revalidate");
      }
      await origin.set({ mode: "up" });
      await origin.release();
      await settle([led, ...joined], testEnv, [path]);
      await settle(await Promise.all(dcs.map((dc) => dc.get(path))), testEnv, [path]);
      for (const dc of dcs) expect((await dc.get(path)).cacheStatus).toMatch(FRESH_HIT);
      expect(await origin.count()).toBe(2);
    },
  );
});
