import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * Web cache deception and route sidestepping through path spellings an origin server reads
 * differently from herdless (`%2F`, `..;`, `%5c`, case, a trailing `/`), through the Worker in
 * workerd with two data centers. The Node twin is test/node/security-routes.test.ts.
 */

describe("web cache deception through path spellings (Worker)", () => {
  it("a victim lured to <static>/..%2faccount on a cacheAuthorized static route gets their page relayed, never stored for the attacker in any data center", async () => {
    // The origin answers a request with a cookie with that visitor's page, without Cache-Control.
    const origin = await testOrigin({
      headers: {},
      byHeader: { cookie: { body: "the victim's account" } },
    });
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const testEnv = edgeEnv(origin.url, {
      routes: [{ match: `${p}/static/*`, cacheAuthorized: true, forceTtlMs: 86_400_000 }],
    });
    const clock = new ManualClock(Date.now());
    const [victimDc, attackerDc] = dataCenters(2, testEnv, clock);
    const lures = [`${p}/static/..%2faccount`, `${p}/static/..;/account`, `${p}/static/..%5caccount`];
    await useInCoordinators(testEnv, [...lures, `${p}/static/app.css`], clock, `guard-${crypto.randomUUID()}`);
    for (const lure of lures) {
      const victim = await victimDc!.get(lure, { headers: { cookie: "session=victim" } });
      expect(victim.body, lure).toBe("the victim's account");
      expect(victim.cacheStatus, lure).toMatch(/fwd=bypass/);
      await victim.settled;
      for (const dc of [victimDc!, attackerDc!]) {
        const attacker = await dc.get(lure);
        expect(attacker.body, lure).not.toContain("victim");
      }
    }
    // What is under the route is still cached with credentials.
    await (
      await victimDc!.get(`${p}/static/app.css`, { headers: { cookie: "session=victim" } })
    ).settled;
    expect((await attackerDc!.get(`${p}/static/app.css`)).body).toBe("the victim's account");
    expect(await origin.count(`${p}/static/app.css`)).toBe(1);
  });

  it("an /api/* bypass is not sidestepped by /API/, /api%2f or a trailing-slash exact route: each spelling reaches the origin every time", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const testEnv = edgeEnv(origin.url, {
      routes: [
        { match: `${p}/api/*`, bypass: true },
        { match: `${p}/login`, bypass: true },
      ],
    });
    const clock = new ManualClock(Date.now());
    const [dc] = dataCenters(1, testEnv, clock);
    const spellings = [`${p}/API/me`, `${p}/api%2fme`, `${p}/api;x/me`, `${p}/login/`, `${p.toUpperCase()}/LOGIN`];
    await useInCoordinators(testEnv, spellings, clock, `guard-${crypto.randomUUID()}`);
    for (const spelling of spellings) {
      for (let i = 0; i < 2; i++) {
        const answer = await dc!.get(spelling);
        expect(answer.cacheStatus, spelling).toMatch(/fwd=bypass/);
        await answer.settled;
      }
    }
    expect(await origin.count()).toBe(spellings.length * 2);
  });
});

describe("web cache deception through the origin's path delimiters (Worker)", () => {
  it("an exact <p>/account bypass beside a cacheAuthorized default is not sidestepped by .css, %00, %23 or %3F after it or /index.php or /(S(x)) before it: the victim's page is relayed, never stored for the attacker in any data center", async () => {
    // The origin answers a request with a cookie with that visitor's page, without Cache-Control
    // (as Rails answers /account.css, OpenLiteSpeed /account%00.css).
    const origin = await testOrigin({
      headers: {},
      byHeader: { cookie: { body: "the victim's account" } },
    });
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const testEnv = edgeEnv(origin.url, {
      defaults: { cacheAuthorized: true, defaultTtlMs: 60_000 },
      routes: [{ match: `${p}/account`, bypass: true }],
    });
    const clock = new ManualClock(Date.now());
    const [victimDc, attackerDc] = dataCenters(2, testEnv, clock);
    const lures = [
      `${p}/account.css`,
      `${p}/account%2ecss`,
      `${p}/account%00.css`,
      `${p}/account%23.css`,
      `${p}/account%3F.css`,
      `${p}/static/..%2faccount.css`,
      `/index.php${p}/account.css`,
      `/(S(x))${p}/account`,
    ];
    await useInCoordinators(testEnv, [...lures, `${p}/app.css`], clock, `guard-${crypto.randomUUID()}`);
    for (const lure of lures) {
      const victim = await victimDc!.get(lure, { headers: { cookie: "session=victim" } });
      expect(victim.body, lure).toBe("the victim's account");
      expect(victim.cacheStatus, lure).toMatch(/fwd=bypass/);
      await victim.settled;
      for (const dc of [victimDc!, attackerDc!]) {
        const attacker = await dc.get(lure);
        expect(attacker.body, lure).not.toContain("victim");
        await attacker.settled;
      }
    }
    // Other pages, extensions included, are still cached with credentials.
    await (
      await victimDc!.get(`${p}/app.css`, { headers: { cookie: "session=victim" } })
    ).settled;
    expect((await attackerDc!.get(`${p}/app.css`)).cacheStatus).toMatch(/hit/);
    expect(await origin.count(`${p}/app.css`)).toBe(1);
  });
});

describe("route sidestepping through whitespace, controls and Unicode (Worker)", () => {
  it("an /api/* bypass is not sidestepped by %09, %0a, %1f or %C2%A0 around a segment, a fullwidth letter or a dotless ı: each spelling reaches the origin every time", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const testEnv = edgeEnv(origin.url, { routes: [{ match: `${p}/api/*`, bypass: true }] });
    const clock = new ManualClock(Date.now());
    const [dc] = dataCenters(1, testEnv, clock);
    const spellings = [
      `${p}/api%09/me`,
      `${p}/api%0a/me`,
      `${p}/api%0d/me`,
      `${p}/api%1f/me`,
      `${p}/%20api/me`,
      `${p}/%09api/me`,
      `${p}/api%C2%A0/me`,
      `${p}/%EF%BD%81pi/me`,
      `${p}/ap%C4%B1/me`,
    ];
    await useInCoordinators(testEnv, spellings, clock, `guard-${crypto.randomUUID()}`);
    for (const spelling of spellings) {
      for (let i = 0; i < 2; i++) {
        const answer = await dc!.get(spelling);
        expect(answer.cacheStatus, spelling).toMatch(/fwd=bypass/);
        await answer.settled;
      }
    }
    expect(await origin.count()).toBe(spellings.length * 2);
  });
});

describe("proxy path traversal out of origin.url's path prefix (Worker)", () => {
  it("/..%2f, /..;/, %252e%252e and %5c climbs are a 400 naming the path, never asked of the origin (whose URL has a path), never stored", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const testEnv = edgeEnv(origin.url);
    const [dc] = dataCenters(1, testEnv, new ManualClock(Date.now()));
    for (const climb of ["/..%2fadmin", "/..;/admin", "/x/..;/..;/admin", "/%252e%252e/admin", "/..%5cadmin"]) {
      const attack = await dc!.get(climb);
      expect(attack.status, climb).toBe(400);
      expect(attack.body, climb).toMatch(/climbs above the root/);
      expect(attack.cacheStatus, climb).toBe("herdless; detail=refused");
      expect((await dc!.get(climb, { method: "POST", body: "x" })).status, climb).toBe(400);
    }
    expect(await origin.count()).toBe(0);
  });
});
