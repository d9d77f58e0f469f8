import { describe, expect, it } from "vitest";
import { ManualClock, systemClock } from "../../src/core/clock.ts";
import type { PurgeCommand } from "../../src/core/admin/purge.ts";
import {
  ADMIN_TOKEN,
  adminCall,
  dataCenter,
  dataCenters,
  EDGE,
  edgeEnv,
  useGuardConfig,
  useInCoordinators,
  type DataCenter,
} from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/** Four simulated data centers, each with its own cache and its own isolate (its own copy of the purge list). */
const DCS = 4;
const CACHED = "max-age=60, stale-if-error=600";
/** Purges return after this long (real time); every isolate's copy is younger. */
const ADMIN = { admin: { token: ADMIN_TOKEN, purgePropagationMs: 20 } };
/**
 * The failures these tests cause on purpose must reach the origin, not an open breaker nor
 * the key's backoff (which would answer 503 until it passes: edge-backoff.test.ts).
 */
const PATIENT_BREAKER = { breaker: { failureThreshold: 100, backoffBaseMs: 0 } };

async function expectEveryDc(
  dcs: DataCenter[],
  path: string,
  expected: { body: string; cacheStatus: RegExp },
): Promise<void> {
  for (const dc of dcs) {
    const answer = await dc.get(path);
    expect({ dc: dc.name, status: answer.status, body: answer.body }).toEqual({
      dc: dc.name,
      status: 200,
      body: expected.body,
    });
    expect(answer.cacheStatus).toMatch(expected.cacheStatus);
  }
}

/**
 * Fills `purged` and `kept` in every data center, purges with `command` through the admin
 * API of one more isolate, then checks each purged key: with the origin down every data
 * center answers an error (never the purged body: stale-if-error must not bring it back);
 * with the origin up every data center gets the new version from one origin request.
 * Keys outside the purge stay hits throughout.
 */
async function hardPurge(
  command: PurgeCommand,
  purged: string[],
  kept: string[],
  tags: Record<string, string> = {},
): Promise<void> {
  const paths = Object.fromEntries(
    Object.entries(tags).map(([path, tag]) => [path, { headers: { "cache-control": CACHED, "cache-tag": tag } }]),
  );
  const origin = await testOrigin({ headers: { "cache-control": CACHED }, paths });
  const testEnv = edgeEnv(origin.url, { ...ADMIN, ...PATIENT_BREAKER });
  const all = [...purged, ...kept];
  // A guard object of this test's own, so failures here count nowhere else.
  const guardName = `guard-${crypto.randomUUID()}`;
  await useGuardConfig(testEnv, guardName);
  await useInCoordinators(testEnv, all, systemClock, guardName);
  const dcs = dataCenters(DCS, testEnv, undefined, { ownIsolate: true });
  const bodies = new Map<string, string>();
  for (const path of all) {
    await expectEveryDc(dcs.slice(0, 1), path, {
      body: `${path} #${(await origin.count()) + 1}`,
      cacheStatus: /fwd=uri-miss/,
    });
    bodies.set(path, `${path} #${await origin.count()}`);
    // From the key's object: this cache's shared copy, a hit (nothing went forward).
    await expectEveryDc(dcs.slice(1), path, {
      body: bodies.get(path) ?? "",
      cacheStatus: /^herdless; hit; ttl=(59|60)$/,
    });
    // Every data center now holds it in its own cache.
    await expectEveryDc(dcs, path, { body: bodies.get(path) ?? "", cacheStatus: /^herdless; hit; ttl=/ });
  }
  expect(await origin.count()).toBe(all.length);

  const admin = dataCenter(`admin-${crypto.randomUUID()}`, testEnv, undefined, { ownIsolate: true });
  const purge = await adminCall(admin, "POST", "purge", { body: command });
  expect(purge.status).toBe(200);
  expect(JSON.parse(purge.body)).toEqual({ purged: { ...command, soft: false } });

  await origin.set({ mode: "down" });
  for (const path of purged) {
    for (const dc of dcs) {
      const answer = await dc.get(path);
      expect(answer.status).toBe(502);
      expect(answer.body).not.toContain(bodies.get(path));
      expect(answer.cacheStatus).toMatch(/^herdless; fwd=uri-miss; detail=origin-error$/);
    }
  }
  // One failed attempt per data center per purged key (nothing to coalesce them with: they came one after another).
  const afterFailures = all.length + purged.length * DCS;
  expect(await origin.count()).toBe(afterFailures);

  await origin.set({ mode: "up" });
  for (const [i, path] of purged.entries()) {
    const fresh = `${path} #${afterFailures + i + 1}`;
    // The first data center fetches the new version; the others get it from the key's coordinator
    // (this cache's shared copy: a hit, nothing went forward).
    await expectEveryDc(dcs.slice(0, 1), path, {
      body: fresh,
      cacheStatus: /^herdless; fwd=uri-miss; fwd-status=200; ttl=(59|60)/,
    });
    await expectEveryDc(dcs.slice(1), path, { body: fresh, cacheStatus: /^herdless; hit; ttl=(59|60)$/ });
    await expectEveryDc(dcs, path, { body: fresh, cacheStatus: /^herdless; hit; ttl=/ });
  }
  for (const path of kept)
    await expectEveryDc(dcs, path, { body: bodies.get(path) ?? "", cacheStatus: /^herdless; hit; ttl=/ });
  expect(await origin.count()).toBe(afterFailures + purged.length);
}

describe("hard purge across four data centers", () => {
  it("by URL: after the purge returns, every data center misses and fetches the new version; with the origin down, never the purged body", async () => {
    await hardPurge({ urls: [`${EDGE}/hard/page?utm_source=mail`] }, ["/hard/page"], ["/hard/other"]);
  });

  it("by tag (Cache-Tag from the origin): only the tagged keys", async () => {
    await hardPurge({ tags: ["product-42"] }, ["/tag/a", "/tag/b"], ["/tag/c"], {
      "/tag/a": "product-42, catalog",
      "/tag/b": "product-42",
      "/tag/c": "catalog",
    });
  });

  it("security: tags named like an object's own fields (constructor, toString, __proto__) are hits like any other, and purge only what they name", async () => {
    // The tags are the origin's words, taken from what users write (a blog tag): a page tagged
    // `constructor` read as purged on every request (a mark found on Object.prototype), one
    // origin request each; a purge of `__proto__` set the list's prototype and was lost.
    await hardPurge({ tags: ["__proto__"] }, ["/proto/b"], ["/proto/a"], {
      "/proto/a": "constructor",
      "/proto/b": "__proto__, toString",
    });
  });

  it("security: a page being fetched when the operator purges it is not kept nor handed to a later visitor; after the purge returns every data center gets the new version", async () => {
    const origin = await testOrigin({ headers: { "cache-control": CACHED }, mode: "hold" });
    const testEnv = edgeEnv(origin.url, { ...ADMIN, ...PATIENT_BREAKER });
    const path = `/inflight-${crypto.randomUUID().slice(0, 8)}`;
    const guardName = `guard-${crypto.randomUUID()}`;
    await useGuardConfig(testEnv, guardName);
    await useInCoordinators(testEnv, [path], systemClock, guardName);
    const dcs = dataCenters(2, testEnv, undefined, { ownIsolate: true });
    const first = dcs[0]!.get(path);
    await origin.waitFor({ held: 1 });
    // The origin's answer (the page before the edit) is on its way; the operator purges.
    const admin = dataCenter(`admin-${crypto.randomUUID()}`, testEnv, undefined, { ownIsolate: true });
    expect((await adminCall(admin, "POST", "purge", { body: { urls: [`${EDGE}${path}`] } })).status).toBe(200);
    // Visitors arriving after the purge returned, while the fetch it overtook still runs: one in
    // the first data center's isolate (its flight), one in another (the key's object).
    const joiners = [dcs[0]!.get(path), dcs[1]!.get(path)];
    // Real time for ordering only: the visitors reach the running fetch before it answers.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await origin.set({ mode: "up" });
    await origin.release();
    // The request that asked before the purge gets what it asked for.
    expect((await first).body).toBe(`${path} #1`);
    // Before: the visitors were handed the old page, and it was stored as every data center's hit.
    for (const joiner of await Promise.all(joiners)) expect(joiner.body).toBe(`${path} #2`);
    await expectEveryDc(dcs, path, { body: `${path} #2`, cacheStatus: /^herdless; hit; ttl=/ });
    expect(await origin.count()).toBe(2);
  });

  it("everything ({all: true})", async () => {
    await hardPurge({ all: true }, ["/all/a", "/all/b"], []);
  });
});

describe("security: a purged copy never stands in for the origin's failure", () => {
  it("a copy the operator hard-purged while its revalidation ran at the key's object is never served stale-if-error, to a visitor after the purge returned nor to the request that led that revalidation", async () => {
    // The origin fails slowly: it resets each request after 800 ms (real time).
    const origin = await testOrigin({ headers: { "cache-control": "max-age=1" }, body: "secret v1" });
    const testEnv = edgeEnv(origin.url, { ...ADMIN, ...PATIENT_BREAKER });
    const clock = new ManualClock(Date.now());
    const guardName = `guard-${crypto.randomUUID()}`;
    await useGuardConfig(testEnv, guardName);
    await useInCoordinators(testEnv, ["/leak"], clock, guardName);
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, testEnv, clock, { ownIsolate: true });
    expect((await dc.get("/leak")).body).toBe("secret v1");
    clock.advance(2_000);
    await origin.set({ mode: "down", delayMs: 800 });
    // The copy expired; its revalidation is in flight at the key's object when the operator purges.
    const leader = dc.get("/leak");
    await origin.waitFor({ count: 2 });
    clock.advance(5);
    expect((await adminCall(dc, "POST", "purge", { body: { urls: [`${EDGE}/leak`] } })).status).toBe(200);
    clock.advance(5);
    // Before: both were answered the purged copy (200 secret v1, detail=stale-if-error) when the origin failed.
    const visitor = dc.get("/leak");
    for (const answer of await Promise.all([visitor, leader])) {
      expect(answer.status).toBe(502);
      expect(answer.body).not.toContain("secret v1");
      expect(answer.cacheStatus).toMatch(/detail=origin-error$/);
    }
  });
});

describe("security: one page under many spellings of its URL", () => {
  it("an attacker's /%70age and %-case store nothing apart: one origin request, asked by the plain spelling, and the operator's purge of the plain URL purges what they stored", async () => {
    const origin = await testOrigin({ headers: { "cache-control": CACHED } });
    const testEnv = edgeEnv(origin.url, { ...ADMIN, ...PATIENT_BREAKER });
    const guardName = `guard-${crypto.randomUUID()}`;
    await useGuardConfig(testEnv, guardName);
    await useInCoordinators(testEnv, ["/spelled/caf%C3%A9"], systemClock, guardName);
    const dc = dataCenter(`spelled-${crypto.randomUUID()}`, testEnv, undefined, { ownIsolate: true });

    // Each spelling was a key of its own: one origin request each, and a copy a purge missed.
    for (const spelling of ["/spelled/c%61f%c3%a9", "/sp%65lled/caf%C3%a9", "/spelled/caf%C3%A9"])
      expect((await dc.get(spelling)).body).toBe("/spelled/caf%C3%A9 #1");
    expect(await origin.count()).toBe(1);

    const purge = await adminCall(dc, "POST", "purge", { body: { urls: [`${EDGE}/spelled/caf%C3%A9`] } });
    expect(purge.status).toBe(200);
    const victim = await dc.get("/spelled/c%61f%c3%a9");
    expect(victim.body).toBe("/spelled/caf%C3%A9 #2");
    expect(victim.cacheStatus).toMatch(/fwd=uri-miss/);
  });
});
