import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, settle, useInCoordinators, type DataCenter } from "./edge-harness.ts";
import { testOrigin, type TestOrigin } from "./test-origin.ts";
import type { OriginBehaviourPatch } from "./origin-protocol.ts";

/**
 * What a request collapsed onto another's fill takes, attacked in workerd: the attacker's
 * request reaches the origin first and is held there; the victims arrive while it runs, in
 * the attacker's data center (they wait on its isolate's call) and in another one (they wait
 * on the key's object); then the origin answers.
 */

const browser = (agent: string, extra: Record<string, string> = {}) => ({
  "user-agent": `Mozilla/5.0 (X11; Linux x86_64) ${agent}`,
  accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
  "accept-language": "en-US,en;q=0.9",
  ...extra,
});

const VICTIMS = ["Chrome/131.0", "Safari/605.1.15", "Edg/131.0", "OPR/114.0"];

async function setup(errorHeaders: Record<string, string>) {
  const origin = await testOrigin({
    body: "the page",
    headers: { "cache-control": "max-age=60" },
    byHeader: {
      "accept-language: xx": { status: 500, headers: errorHeaders, body: "error 500" },
      "x-debug": { status: 500, headers: errorHeaders, body: "error 500" },
    },
  });
  const clock = new ManualClock(Date.now());
  const testEnv = edgeEnv(origin.url);
  const path = `/home-${crypto.randomUUID().slice(0, 8)}`;
  await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
  const [attackerDc, otherDc] = dataCenters(2, testEnv, clock) as [DataCenter, DataCenter];
  return { origin, testEnv, path, attackerDc, otherDc };
}

/**
 * The first request held at the origin (which answers as `patch` says), the victims arriving
 * meanwhile in both data centers, then the answers.
 */
async function collapsedOnto(
  t: Awaited<ReturnType<typeof setup>>,
  first: Record<string, string>,
  patch: OriginBehaviourPatch = {},
  oneDataCenter = false,
) {
  await t.origin.set({ ...patch, mode: "hold" });
  const leader = t.attackerDc.get(t.path, { headers: first });
  await t.origin.waitFor({ held: 1 });
  const victims = VICTIMS.map((agent, i) =>
    (i % 2 === 0 || oneDataCenter ? t.attackerDc : t.otherDc).get(t.path, { headers: browser(agent) }),
  );
  // Real time for ordering only: the victims reach the leader's fill while it is held.
  await new Promise((resolve) => setTimeout(resolve, 200));
  // Its answer alone: victims that ask again collapse onto a second fill, held until they all
  // joined it (answered at once, it could end before the last of them asked, who would ask a third time).
  await t.origin.release();
  if (
    await t.origin.waitFor({ held: 1 }, 1_000).then(
      () => true,
      () => false,
    )
  )
    await new Promise((resolve) => setTimeout(resolve, 200));
  await t.origin.set({ mode: "up" });
  await t.origin.release();
  const answers = { leader: await leader, victims: await Promise.all(victims) };
  await settle([answers.leader, ...answers.victims], t.testEnv, [t.path]);
  return answers;
}

describe("security: a request collapsed onto another's fill never takes that request's unconfirmed error (Worker)", () => {
  it.each([
    ["marked max-age", { "cache-control": "max-age=60" }],
    ["with no lifetime", {}],
  ] as [string, Record<string, string>][])(
    "CPDoS by collapsing on a cold key: the app's 500 to `Accept-Language: xx`, %s, is the attacker's; the visitors that waited on its fill, in its data center and another, get the page, for 1 origin request more",
    async (_what, errorHeaders) => {
      const t = await setup(errorHeaders);
      const attack = browser("Firefox/133.0", { "accept-language": "xx" });
      const { leader, victims } = await collapsedOnto(t, attack);
      expect(leader.status).toBe(500);
      for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, "the page"]);
      expect(await t.origin.count()).toBe(2);
    },
  );

  it.each([
    ["marked max-age", { "cache-control": "max-age=60" }, false],
    ["with no lifetime", {}, false],
    ["with no lifetime, every visitor in the first one's data center", {}, true],
  ] as [string, Record<string, string>, boolean][])(
    "a real outage (a 500 %s to everyone): the requests collapsed onto the first fill cost 1 origin request more, and all get the error",
    async (_what, errorHeaders, oneDataCenter) => {
      const t = await setup(errorHeaders);
      const down = { status: 500, headers: errorHeaders, body: "error 500" };
      const { leader, victims } = await collapsedOnto(t, browser("Firefox/133.0"), down, oneDataCenter);
      expect(leader.status).toBe(500);
      for (const victim of victims) expect([victim.status, victim.body]).toEqual([500, "error 500"]);
      expect(await t.origin.count()).toBe(2);
    },
  );
});

describe("security: the attacker's second request never leads the visitors' second fill (Worker)", () => {
  it("CPDoS by collapsing, confirmed by the attacker: two requests with its own `X-Debug` and two User-Agents ahead of the visitors on a cold key; the visitors that waited, in both data centers, get the page, and so does the next one", async () => {
    const t = await setup({ "cache-control": "max-age=60" });
    await t.origin.set({ mode: "hold" });
    const first = t.attackerDc.get(t.path, { headers: browser("curl/8.1", { "x-debug": "1" }) });
    await t.origin.waitFor({ held: 1 });
    const second = t.attackerDc.get(t.path, { headers: browser("curl/8.2", { "x-debug": "2" }) });
    // Real time for ordering only: the attacker's second request joins the fill first, then the visitors.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const victims = VICTIMS.map((agent, i) =>
      (i % 2 === 0 ? t.attackerDc : t.otherDc).get(t.path, { headers: browser(agent) }),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    await t.origin.set({ mode: "up" });
    await t.origin.release();
    const answers = [await first, await second, ...(await Promise.all(victims))];
    await settle(answers, t.testEnv, [t.path]);
    expect(answers[0]!.status).toBe(500);
    for (const victim of answers.slice(2)) expect([victim.status, victim.body]).toEqual([200, "the page"]);
    const later = await t.otherDc.get(t.path, { headers: browser("Chrome/131.0") });
    expect([later.status, later.body]).toEqual([200, "the page"]);
  });
});

describe("security: one request's own failures never back a key off for others (Worker)", () => {
  it("an attacker's `Accept-Language: xx` that the gateway answers 502 to, asked twice on a cold key, backs the key off for the attacker alone; a visitor still reaches the origin and gets the page; two different visitors' 502s back it off for all", async () => {
    const origin: TestOrigin = await testOrigin({
      body: "the page",
      headers: { "cache-control": "max-age=60" },
      byHeader: {
        "accept-language: xx": { status: 502, headers: { "cache-control": "no-store" }, body: "bad gateway" },
      },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const paths = [`/cold-${crypto.randomUUID().slice(0, 8)}`, `/down-${crypto.randomUUID().slice(0, 8)}`];
    await useInCoordinators(testEnv, paths, clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock) as [DataCenter, DataCenter];
    const [cold, down] = paths as [string, string];
    const attacker = browser("Firefox/133.0", { "accept-language": "xx" });
    const answers = [];
    for (let i = 0; i < 3; i++) {
      const answer = await attackerDc.get(cold, { headers: attacker });
      await settle([answer], testEnv, [cold]);
      answers.push(answer);
    }
    expect(answers.map((a) => a.status)).toEqual([502, 502, 503]);
    expect(answers[2]!.cacheStatus).toMatch(/detail=backoff/);
    expect(await origin.count(cold)).toBe(2);
    for (const dc of [attackerDc, otherDc]) {
      const victim = await dc.get(cold, { headers: browser("Chrome/131.0") });
      await settle([victim], testEnv, [cold]);
      expect([victim.status, victim.body]).toEqual([200, "the page"]);
    }
    expect(await origin.count(cold)).toBe(3);
    // A real failure: two different visitors got the 502; the third is refused without an origin request.
    await origin.set({ status: 502, headers: { "cache-control": "no-store" }, body: "bad gateway" });
    const visitors = [];
    for (const [dc, agent] of [
      [otherDc, "Chrome/131.0"],
      [attackerDc, "Safari/605.1.15"],
      [otherDc, "Edg/131.0"],
    ] as const) {
      const answer = await dc.get(down, { headers: browser(agent) });
      await settle([answer], testEnv, [down]);
      visitors.push(answer);
    }
    expect(visitors.map((v) => v.status)).toEqual([502, 502, 503]);
    expect(visitors[2]!.cacheStatus).toMatch(/detail=backoff/);
    expect(await origin.count(down)).toBe(2);
  });
});
