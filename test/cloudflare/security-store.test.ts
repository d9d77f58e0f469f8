import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { cacheUrlFor, ENTRY_META_HEADER } from "../../src/cloudflare/cache-api-store.ts";
import { testEntry } from "../../src/core/store/store-conformance.ts";
import { dataCenters, EDGE, edgeEnv, settle, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * What herdless stores, attacked in workerd: each test is the attacker's request, then the
 * victims' (in the attacker's data center and in another one, which the key's coordinator serves).
 */
describe("security: nothing one client should not see is stored (Worker)", () => {
  it("RFC 9111 §4.3.4: a Set-Cookie on a 304 reaches the client that asked, never a later visitor", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=10" }, etag: '"v1"' });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    await useInCoordinators(testEnv, ["/account"], clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    expect((await attackerDc!.get("/account")).status).toBe(200);

    clock.advance(11_000); // stale: the next request revalidates with If-None-Match
    await origin.set({ notModifiedHeaders: { "set-cookie": "session=attacker-triggered" } });
    const attacker = await attackerDc!.get("/account");
    expect(attacker.status).toBe(200);
    expect(attacker.headers.get("set-cookie")).toBe("session=attacker-triggered");
    await origin.set({ notModifiedHeaders: {} });

    const victims = [await attackerDc!.get("/account"), await otherDc!.get("/account")];
    await settle([attacker, ...victims], testEnv, ["/account"]);
    for (const victim of victims) {
      expect(victim.status).toBe(200);
      expect(victim.headers.get("set-cookie")).toBeNull();
    }
  });

  it.each([
    ["a Set-Cookie", { "set-cookie": "session=victim-1" }, {}],
    ["Cache-Control: private", { "cache-control": "private" }, {}],
    ["the victim's Authorization (RFC 9111 §3.5)", {}, { authorization: "Bearer victim" }],
  ] as [string, Record<string, string>, Record<string, string>][])(
    "an origin error carrying %s answers the victim's request alone, never the requests that waited on the same fetch",
    async (_what, errorHeaders, victimHeaders) => {
      // The victim's page is the one it was asked for (its Authorization, or its held request).
      const origin = await testOrigin({
        status: 503,
        headers: errorHeaders,
        body: "the victim's error page",
        mode: "hold",
        byHeader: { "authorization: Bearer victim": { body: "the victim's error page" } },
      });
      const clock = new ManualClock(Date.now());
      const testEnv = edgeEnv(origin.url);
      const path = `/account-${crypto.randomUUID().slice(0, 8)}`;
      await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
      const [victimDc, otherDc] = dataCenters(2, testEnv, clock);
      const victim = victimDc!.get(path, { headers: victimHeaders });
      await origin.waitFor({ held: 1 });
      // One attacker in the victim's data center (its isolate's flight), one in another (the key's object).
      const attackers = [victimDc!.get(path), otherDc!.get(path)];
      // Real time for ordering only: the attackers reach the victim's fetch while it is held.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await origin.set({ mode: "up", body: "an error page" });
      await origin.release();
      const mine = await victim;
      expect(mine.status).toBe(503);
      expect(mine.body).toBe("the victim's error page");
      for (const attacker of await Promise.all(attackers)) {
        expect(attacker.status).toBe(503);
        expect(attacker.headers.get("set-cookie")).toBeNull();
        expect(attacker.body).not.toContain("victim");
      }
      // Requests unlike the victim's (no Authorization) do not take its failure at all: they ask
      // once more, together (an unconfirmed error is one request's: flight.ts othersUnconfirmed).
      expect(await origin.count()).toBe(victimHeaders.authorization === undefined ? 1 : 2);
      await settle([mine, ...(await Promise.all(attackers))], testEnv, [path]);
    },
  );

  it.each([
    ["read whole", undefined],
    ["streamed", 200_000],
  ])(
    "RFC 9111 §5.2.2.4 / §5.2.2.7: the fields a qualified no-cache or private names (Set-Cookie among them) reach the request that made the fill (body %s), never the requests that waited on it nor a later visitor",
    async (_how, bodyBytes) => {
      const named = {
        "cache-control": 'max-age=60, no-cache="x-a, set-cookie", private="x-user"',
        "x-a": "1",
        "x-user": "ann",
        "set-cookie": "session=ann",
      };
      const origin = await testOrigin({ headers: named, mode: "hold", ...(bodyBytes ? { bodyBytes } : {}) });
      const clock = new ManualClock(Date.now());
      const testEnv = edgeEnv(origin.url);
      const path = `/account-${crypto.randomUUID().slice(0, 8)}`;
      await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
      const [ownerDc, otherDc] = dataCenters(2, testEnv, clock);
      const owner = ownerDc!.get(path);
      await origin.waitFor({ held: 1 });
      // One waiter in the owner's data center (its isolate's flight), one in another (the key's object).
      const waiters = [ownerDc!.get(path), otherDc!.get(path)];
      // Real time for ordering only: the waiters reach the owner's fetch while it is held.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await origin.set({ mode: "up" });
      await origin.release();
      const mine = await owner;
      expect([mine.headers.get("x-a"), mine.headers.get("x-user")]).toEqual(["1", "ann"]);
      expect(mine.headers.getSetCookie()).toEqual(["session=ann"]);
      const later = await Promise.all(waiters);
      await settle([mine, ...later], testEnv, [path]);
      later.push(await ownerDc!.get(path), await otherDc!.get(path));
      for (const victim of later) {
        expect(victim.status).toBe(200);
        expect(victim.body).toBe(mine.body);
        expect(victim.cacheStatus).toMatch(/collapsed|hit/);
        expect([victim.headers.get("x-a"), victim.headers.get("x-user")]).toEqual([null, null]);
        expect(victim.headers.getSetCookie()).toEqual([]);
      }
      expect(await origin.count()).toBe(1);
      await settle(later, testEnv, [path]);
    },
  );
  it("CPDoS, a header the application chokes on: the gateway's 503 and the app's 400 to an attacker's header, both marked max-age, never replace the stored page for the victims", async () => {
    // Every answer carries max-age (a CDN rule); the application fails on X-Debug and X-Api-Version.
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      byHeader: { "x-debug": { status: 503 }, "x-api-version": { status: 400 } },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const paths = [p, `${p}/api`];
    await useInCoordinators(testEnv, paths, clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    for (const path of paths) expect((await attackerDc!.get(path)).status).toBe(200);
    // At expiry the attacker's request is the one that asks the origin again.
    clock.advance(61_000);
    const attacks = [
      await attackerDc!.get(p, { headers: { "x-debug": "1" } }),
      await attackerDc!.get(`${p}/api`, { headers: { "x-api-version": "9" } }),
    ];
    await settle(attacks, testEnv, paths);
    expect(attacks.map((a) => a.status)).toEqual([503, 400]);
    for (const path of paths) for (const dc of [attackerDc!, otherDc!]) expect((await dc.get(path)).status).toBe(200);
    expect(await origin.count()).toBe(6);
  });

  it("CPDoS on a cold key: the app's 500 to a User-Agent outside ASCII and a gateway's 502 to 6 KB of headers, marked max-age, are never the victims' page", async () => {
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      byHeader: { "x-crash": { status: 500 }, "x-filler": { status: 502 } },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const paths = [`${p}/a`, `${p}/b`];
    await useInCoordinators(testEnv, paths, clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    // The test origin fails on the header's name; the values are what make the request unusual.
    const attacks = [
      await attackerDc!.get(paths[0]!, { headers: { "x-crash": "1", "user-agent": "caf\u00e9" } }),
      await attackerDc!.get(paths[1]!, { headers: { "x-filler": "a".repeat(6_000) } }),
    ];
    await settle(attacks, testEnv, paths);
    expect(attacks.map((a) => a.status)).toEqual([500, 502]);
    for (const path of paths)
      for (const dc of [attackerDc!, otherDc!]) expect((await dc.get(path)).status, path).toBe(200);
  });

  it("CPDoS on a cold key through an ordinary header's value: the app's 500 to `Accept-Language: xx`, a WAF's 400 to a 3 KB Referer or to `User-Agent: x`, marked max-age, are stored for the attacker's request alone; browsers in both data centers get the page; a 500 the origin gives everyone is stored once a second request got it", async () => {
    // Every answer carries max-age (a global middleware); nothing is stored for these URLs yet.
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const referer = `https://example.com/${"a".repeat(3_000)}`;
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      byHeader: {
        "accept-language: xx": { status: 500 },
        [`referer: ${referer}`]: { status: 400 },
        "user-agent: x": { status: 400 },
      },
      paths: { [`${p}/suite`]: { status: 500 } },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const paths = [`${p}/a`, `${p}/b`, `${p}/c`, `${p}/down`, `${p}/suite`];
    await useInCoordinators(testEnv, paths, clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    const browser = (agent: string) => ({
      "user-agent": `Mozilla/5.0 (X11; Linux x86_64) ${agent}`,
      accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
      "accept-language": "en-US,en;q=0.9",
    });
    const attacks: [Record<string, string>, number][] = [
      [{ "accept-language": "xx" }, 500],
      [{ referer }, 400],
      [{ "user-agent": "x" }, 400],
    ];
    for (const [i, [attack, status]] of attacks.entries()) {
      const path = paths[i]!;
      const headers = { ...browser("Firefox/133.0"), ...attack };
      const first = await attackerDc!.get(path, { headers });
      await settle([first], testEnv, [path]);
      expect(first.status, path).toBe(status);
      // The same request again is answered from the cache, as RFC 9111 §3 stores it.
      const again = await attackerDc!.get(path, { headers });
      expect([again.status, again.cacheStatus], path).toEqual([status, expect.stringMatching(/hit/)]);
      for (const dc of [attackerDc!, otherDc!]) {
        const victim = await dc.get(path, { headers: browser("Chrome/131.0") });
        await settle([victim], testEnv, [path]);
        expect(victim.status, path).toBe(200);
      }
    }
    expect(await origin.count()).toBe(6);
    // The conformance suite's status-500-fresh: its second request differs in Req-Num alone, and is a hit.
    const suite = (n: number) => ({ ...browser("node"), "test-id": "status-500-fresh", "req-num": `${n}` });
    const first = await attackerDc!.get(paths[4]!, { headers: suite(1) });
    await settle([first], testEnv, [paths[4]!]);
    const second = await attackerDc!.get(paths[4]!, { headers: suite(2) });
    expect([first.status, second.status, second.cacheStatus]).toEqual([500, 500, expect.stringMatching(/hit/)]);
    expect(await origin.count()).toBe(7);
    // A real failure: the origin answers 500 to everyone. Two different requests got it: it is the URL's.
    await origin.set({ status: 500 });
    const down = paths[3]!;
    const visitors = [
      [attackerDc!, "Chrome/131.0"],
      [otherDc!, "Safari/605.1.15"],
      [otherDc!, "Edg/131.0"],
      [attackerDc!, "OPR/115.0"],
    ] as const;
    const answers = [];
    for (const [dc, agent] of visitors) {
      const answer = await dc.get(down, { headers: browser(agent) });
      await settle([answer], testEnv, [down]);
      answers.push(answer);
    }
    expect(answers.map((a) => a.status)).toEqual([500, 500, 500, 500]);
    expect(answers[2]!.cacheStatus).toMatch(/hit/);
    expect(await origin.count()).toBe(9);
  });

  it("CPDoS on a cold key, confirmed by the attacker: the app's 500 to a header no browser sends, marked max-age, asked twice with two User-Agents, is never the victims' page", async () => {
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      byHeader: { "x-debug": { status: 500 } },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    await useInCoordinators(testEnv, [p], clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    // Two requests of the attacker's, told apart by their User-Agent: two requests "got" the error.
    for (const n of [1, 2]) {
      const attack = await attackerDc!.get(p, { headers: { "user-agent": `curl/8.${n}`, "x-debug": `${n}` } });
      await settle([attack], testEnv, [p]);
      expect(attack.status).toBe(500);
    }
    for (const dc of [attackerDc!, otherDc!]) {
      const victim = await dc.get(p, { headers: { "user-agent": "Mozilla/5.0 Chrome/131.0" } });
      await settle([victim], testEnv, [p]);
      expect(victim.status).toBe(200);
    }
    expect(await origin.count()).toBe(3);
  });

  it("CPDoS, an ordinary header's value: the app's 500 to an Accept-Language it crashes on and a WAF's 400 to a Referer, marked max-age, never replace the stored page for the victims, nor through the refresh a stale hit starts", async () => {
    // Every answer carries max-age (a CDN rule); the application fails on header names every browser sends.
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      byHeader: { "accept-language": { status: 500 }, referer: { status: 400 } },
      paths: { [`${p}/news`]: { headers: { "cache-control": "max-age=60, stale-while-revalidate=600" } } },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const paths = [p, `${p}/about`, `${p}/news`];
    await useInCoordinators(testEnv, paths, clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    for (const path of paths) expect((await attackerDc!.get(path)).status).toBe(200);
    // At expiry the attacker's request is the one that asks the origin again.
    clock.advance(61_000);
    const attacks = [
      await attackerDc!.get(p, { headers: { "accept-language": "xx" } }),
      await attackerDc!.get(`${p}/about`, { headers: { referer: "http://x/'" } }),
      // Within stale-while-revalidate the attacker gets the stale page; the refresh carries its header.
      await attackerDc!.get(`${p}/news`, { headers: { "accept-language": "xx" } }),
    ];
    await settle(attacks, testEnv, paths);
    expect(attacks.map((a) => a.status)).toEqual([500, 400, 200]);
    expect(await origin.count()).toBe(6);
    for (const path of paths)
      for (const dc of [attackerDc!, otherDc!]) expect((await dc.get(path)).status, path).toBe(200);
  });

  it("CPDoS, any error to the attacker's own header: a 404 (unknown X-Api-Version), 401 (wrong X-Api-Key) or 403 (a WAF on X-Custom) marked max-age never replaces the stored page for the victims", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      byHeader: { "x-api-version": { status: 404 }, "x-api-key": { status: 401 }, "x-custom": { status: 403 } },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const attacks: [string, Record<string, string>, number][] = [
      [p, { "x-api-version": "9" }, 404],
      [`${p}/key`, { "x-api-key": "wrong" }, 401],
      [`${p}/waf`, { "x-custom": "<script>" }, 403],
    ];
    const paths = attacks.map(([path]) => path);
    await useInCoordinators(testEnv, paths, clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    for (const path of paths) expect((await attackerDc!.get(path)).status).toBe(200);
    // At expiry the attacker's request is the one that asks the origin again.
    clock.advance(61_000);
    const answers = [];
    for (const [path, headers] of attacks) answers.push(await attackerDc!.get(path, { headers }));
    await settle(answers, testEnv, paths);
    expect(answers.map((a) => a.status)).toEqual(attacks.map(([, , status]) => status));
    for (const path of paths)
      for (const dc of [attackerDc!, otherDc!]) {
        const victim = await dc.get(path);
        expect([victim.status, victim.headers.get("cache-status")], path).toEqual([
          200,
          expect.stringMatching(/ttl=60/),
        ]);
        await settle([victim], testEnv, [path]);
      }
    expect(await origin.count()).toBe(9);
  });

  it("RFC 9110 §7.6.1: a Vary the origin names in Connection still governs the storage: the German page is never the victims'", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60", vary: "X-Lang", connection: "Vary" },
      byHeader: { "x-lang": { body: "page in de" } },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const path = `/${crypto.randomUUID().slice(0, 8)}`;
    await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    const attack = await attackerDc!.get(path, { headers: { "x-lang": "de" } });
    expect(attack.body).toBe("page in de");
    await settle([attack], testEnv, [path]);
    for (const dc of [attackerDc!, otherDc!]) {
      const victim = await dc.get(path);
      expect(victim.body).not.toBe("page in de");
      await settle([victim], testEnv, [path]);
    }
  });

  it("RFC 9111 §4.3.4: a 304 whose entity-tag names another representation never relabels the stored copy: the victims get the new page", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=10" }, etag: '"v1"', body: "version 1" });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const path = `/${crypto.randomUUID().slice(0, 8)}`;
    await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
    const [firstDc, otherDc] = dataCenters(2, testEnv, clock);
    expect((await firstDc!.get(path)).body).toBe("version 1");
    // The page changed; the origin still answers the old tag with a 304, naming the new one.
    await origin.set({ body: "version 2", notModifiedHeaders: { etag: '"v2"' } });
    clock.advance(11_000);
    for (const dc of [firstDc!, otherDc!, firstDc!]) {
      const victim = await dc.get(path);
      expect(victim.body).toBe("version 2");
      await settle([victim], testEnv, [path]);
    }
    expect(await origin.count()).toBe(3);
  });

  it("CPDoS through a variant no one asked for yet: an error without Vary to the attacker's header never takes the place of the stored variants", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60", vary: "X-Lang" },
      byHeader: { "x-api-version": { status: 404, headers: { "cache-control": "max-age=300" }, body: "unknown" } },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const path = `/${crypto.randomUUID().slice(0, 8)}`;
    await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    for (const lang of ["de", "fr"]) {
      const visitor = await attackerDc!.get(path, { headers: { "x-lang": lang } });
      expect(visitor.status).toBe(200);
      await settle([visitor], testEnv, [path]);
    }
    const attack = await attackerDc!.get(path, { headers: { "x-lang": "zz", "x-api-version": "9" } });
    expect(attack.status).toBe(404);
    await settle([attack], testEnv, [path]);
    for (const dc of [attackerDc!, otherDc!])
      for (const lang of ["de", "fr"]) {
        const victim = await dc.get(path, { headers: { "x-lang": lang } });
        expect(victim.status, lang).toBe(200);
        await settle([victim], testEnv, [path]);
      }
    expect(await origin.count()).toBe(3);
  });

  it("RFC 9112 §5.1: after a 103 Early Hints, a final head workerd would refuse (`Cache-Control : private`) is a 502, never read as a page without it and stored for the next visitor", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      earlyHints: true,
      rawHeaderLines: "Cache-Control : private\r\n",
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const path = `/${crypto.randomUUID().slice(0, 8)}`;
    await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
    const [ownerDc, otherDc] = dataCenters(2, testEnv, clock);
    const owner = await ownerDc!.get(path);
    expect(owner.status).toBe(502);
    await settle([owner], testEnv, [path]);
    for (const dc of [ownerDc!, otherDc!]) {
      const victim = await dc.get(path);
      expect(victim.body).not.toBe(`${path} #1`);
      await settle([victim], testEnv, [path]);
    }
  });

  it("RFC 9111 §3.5: a signed-in request's private answer never evicts the copy every visitor gets, nor the stale copy that hides the next outage", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=10, stale-if-error=600" },
      body: "the public page",
      // The signed-in view: the user's own page, with their session.
      byHeader: {
        authorization: { headers: { "cache-control": "private", "set-cookie": "session=ann" }, body: "ann's page" },
      },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const path = `/home-${crypto.randomUUID().slice(0, 8)}`;
    await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    const first = await otherDc!.get(path);
    await settle([first], testEnv, [path]);
    // Each signed-in request goes to the origin (§3.5), as often as the attacker likes.
    const attacks = [];
    for (let i = 0; i < 3; i++) attacks.push(await attackerDc!.get(path, { headers: { authorization: "Bearer ann" } }));
    await settle(attacks, testEnv, [path]);
    for (const attack of attacks)
      expect([attack.body, attack.headers.get("set-cookie")]).toEqual(["ann's page", "session=ann"]);
    expect(await origin.count()).toBe(4);
    for (const dc of [attackerDc!, otherDc!]) {
      const victim = await dc.get(path);
      await settle([victim], testEnv, [path]);
      expect([victim.body, victim.headers.get("set-cookie")]).toEqual(["the public page", null]);
      expect(victim.cacheStatus).toMatch(/; hit/);
    }
    expect(await origin.count()).toBe(4);
    // The origin goes down once the copy expired: the copy still hides it.
    clock.advance(11_000);
    await origin.set({ mode: "down" });
    const later = await otherDc!.get(path);
    await settle([later], testEnv, [path]);
    expect([later.status, later.body]).toEqual([200, "the public page"]);
    expect(later.cacheStatus).toMatch(/stale-if-error/);
  });

  it("RFC 9110 §14.4: a 200 labelled with a Content-Range (a part of the page, sent as the whole) is never stored for the victims", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60", "content-range": "bytes 0-3/12" },
      body: "the ",
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const path = `/file-${crypto.randomUUID().slice(0, 8)}`;
    await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    const first = await attackerDc!.get(path);
    await settle([first], testEnv, [path]);
    expect([first.body, first.cacheStatus]).toEqual(["the ", expect.stringMatching(/uncacheable/)]);
    await origin.set({ headers: { "cache-control": "max-age=60" }, body: "the page now" });
    for (const dc of [attackerDc!, otherDc!]) {
      const victim = await dc.get(path);
      await settle([victim], testEnv, [path]);
      expect(victim.body).toBe("the page now");
    }
    expect(await origin.count()).toBe(2);
  });

  it("CPDoS through Authorization: the 401, 403 or 503 an attacker's wrong token gets, marked public with a lifetime, is never the victims' page, even on a key with nothing stored", async () => {
    // A gateway that marks every answer public (a CDN rule), whatever its status.
    const refused = (status: number) => ({ status, body: `refused ${status}` });
    const origin = await testOrigin({
      headers: { "cache-control": "public, max-age=60" },
      body: "the page",
      // The first header named that a request carries decides.
      byHeader: { "x-token-403": refused(403), "x-token-503": refused(503), authorization: refused(401) },
    });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const attacks: [string, Record<string, string>, number][] = [
      [`${p}/401`, { authorization: "Bearer wrong" }, 401],
      [`${p}/403`, { authorization: "Bearer wrong", "x-token-403": "1" }, 403],
      [`${p}/503`, { authorization: "Bearer wrong", "x-token-503": "1" }, 503],
    ];
    const paths = attacks.map(([path]) => path);
    await useInCoordinators(testEnv, paths, clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    for (const [path, headers, status] of attacks) {
      const attacker = await attackerDc!.get(path, { headers });
      await settle([attacker], testEnv, [path]);
      expect(attacker.status).toBe(status);
      for (const dc of [attackerDc!, otherDc!]) {
        const victim = await dc.get(path);
        await settle([victim], testEnv, [path]);
        expect([victim.status, victim.body], path).toEqual([200, "the page"]);
      }
    }
  });

  it.each([
    ["defaultTtlMs", "must-revalidate"],
    ["forceTtlMs", "max-age=0, must-revalidate"],
  ])(
    "RFC 9111 §3.5: a signed-in user's page marked only must-revalidate is never the visitors' for the route's %s or a heuristic lifetime",
    async (ttl, cacheControl) => {
      // Last changed a year ago: 10% of that is a heuristic lifetime of a day.
      const origin = await testOrigin({
        headers: { "cache-control": cacheControl, "last-modified": "Mon, 01 Jan 2024 00:00:00 GMT" },
        byHeader: { authorization: { body: "ann's page" } },
      });
      const clock = new ManualClock(Date.now());
      const testEnv = edgeEnv(origin.url, { defaults: { [ttl]: 600_000 } });
      const path = `/me-${crypto.randomUUID().slice(0, 8)}`;
      await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
      const [annDc, otherDc] = dataCenters(2, testEnv, clock);
      const ann = await annDc!.get(path, { headers: { authorization: "Bearer ann" } });
      await settle([ann], testEnv, [path]);
      expect(ann.body).toBe("ann's page");
      for (const dc of [annDc!, otherDc!]) {
        const victim = await dc.get(path);
        await settle([victim], testEnv, [path]);
        expect([victim.status, victim.body]).toEqual([200, expect.stringMatching(/ #\d+$/)]);
      }
    },
  );

  it.each([
    ["read whole", undefined],
    ["streamed", 200_000],
  ])(
    "RFC 9111 §3.5: a signed-in user's page, shareable only after revalidation (max-age=0, must-revalidate), never goes to the visitors collapsed onto that user's fill (body %s)",
    async (_how, bodyBytes) => {
      const signedIn = { headers: { "cache-control": "max-age=0, must-revalidate" }, body: "ann's page" };
      const origin = await testOrigin({
        headers: { "cache-control": "max-age=0, must-revalidate" },
        mode: "hold",
        ...(bodyBytes ? { bodyBytes } : {}),
        byHeader: { authorization: bodyBytes ? { ...signedIn, bodyBytes: bodyBytes + 1 } : signedIn },
      });
      const clock = new ManualClock(Date.now());
      const testEnv = edgeEnv(origin.url);
      const path = `/me-${crypto.randomUUID().slice(0, 8)}`;
      await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
      const [annDc, otherDc] = dataCenters(2, testEnv, clock);
      const ann = annDc!.get(path, { headers: { authorization: "Bearer ann" } });
      await origin.waitFor({ held: 1 });
      // One visitor in ann's data center (its isolate's flight), one in another (the key's object).
      const victims = [annDc!.get(path), otherDc!.get(path)];
      // Real time for ordering only: the visitors reach ann's fetch while it is held.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await origin.set({ mode: "up" });
      const mine = await ann;
      const theirs = await Promise.all(victims);
      await settle([mine, ...theirs], testEnv, [path]);
      for (const victim of theirs) {
        expect(victim.status).toBe(200);
        expect(victim.body).not.toBe(mine.body);
        expect(victim.body.length).toBe(bodyBytes ?? `${path} #2`.length);
      }
    },
  );

  it.each([
    ["read whole", undefined],
    ["streamed", 200_000],
  ])(
    "RFC 9111 §4.4: a fill the origin answered with the old page while a POST to the URL succeeded is never stored after the invalidation (body %s): the victims get the new page",
    async (_how, bodyBytes) => {
      // Every GET is held until released (answered as it was when it arrived); a write goes at once.
      const origin = await testOrigin({
        headers: { "cache-control": "max-age=60" },
        mode: "hold",
        byHeader: { "x-write": { mode: "up", body: "saved" } },
        ...(bodyBytes ? { bodyBytes } : {}),
      });
      const clock = new ManualClock(Date.now());
      const testEnv = edgeEnv(origin.url);
      const path = `/doc-${crypto.randomUUID().slice(0, 8)}`;
      await useInCoordinators(testEnv, [path], clock, `guard-${crypto.randomUUID()}`);
      const [writerDc, otherDc] = dataCenters(2, testEnv, clock);
      const slow = writerDc!.get(path);
      await origin.waitFor({ held: 1 });
      clock.advance(1_000);
      const post = await writerDc!.get(path, { method: "POST", body: "new text", headers: { "x-write": "1" } });
      expect(post.status).toBe(200);
      clock.advance(1_000);
      // The old page (asked for before the write) reaches its caller, and is kept nowhere.
      await origin.set({ mode: "up", ...(bodyBytes ? { bodyBytes: bodyBytes + 1 } : {}) });
      const old = await slow;
      await settle([post, old], testEnv, [path]);
      const victims = [];
      for (const dc of [writerDc!, otherDc!]) {
        victims.push(await dc.get(path));
        await settle(victims, testEnv, [path]);
      }
      // A streamed body is not said to be stored (its head goes out first: RFC 9211 §2.5); the hit shows it was.
      expect(victims[0]!.cacheStatus).toMatch(
        bodyBytes ? /fwd=uri-miss; fwd-status=200; ttl=60$/ : /fwd=uri-miss; fwd-status=200; ttl=60; stored/,
      );
      expect(victims[1]!.cacheStatus).toMatch(/; hit/);
      for (const victim of victims) expect([victim.status, victim.body === old.body]).toEqual([200, false]);
      expect(victims[1]!.body).toBe(victims[0]!.body);
      expect((await origin.stats()).requests.filter((r) => r.method === "GET")).toHaveLength(2);
    },
  );

  it("RFC 9111 §3: a 304 that says private removes the entry: the next visitor's answer comes from the origin", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=10" }, etag: '"v1"' });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    await useInCoordinators(testEnv, ["/me"], clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    await attackerDc!.get("/me");
    clock.advance(11_000);
    await origin.set({ notModifiedHeaders: { "cache-control": "private, max-age=60" } });
    const attacker = await attackerDc!.get("/me");
    expect(attacker.cacheStatus).not.toContain("stored");
    const before = await origin.count();
    const victim = await otherDc!.get("/me");
    await settle([attacker, victim], testEnv, ["/me"]);
    expect(victim.cacheStatus).not.toMatch(/; hit/);
    expect(await origin.count()).toBe(before + 1);
  });

  it("RFC 9111 §4.1, §4.3.4: a 304 that varies on a header the copy was not chosen by never makes it every variant's page", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=10" }, etag: '"v1"' });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url);
    await useInCoordinators(testEnv, ["/news"], clock, `guard-${crypto.randomUUID()}`);
    const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
    expect((await attackerDc!.get("/news")).body).toBe("/news #1"); // stored without Vary
    // The origin now serves a page per language; the stored copy's validator still matches English.
    clock.advance(11_000);
    await origin.set({
      headers: { "cache-control": "max-age=10", vary: "x-lang" },
      notModifiedHeaders: { vary: "x-lang" },
    });
    const attacker = await attackerDc!.get("/news", { headers: { "x-lang": "en" } });
    // The 304 vouches for the copy for English only: that client gets it, nobody after it.
    expect(attacker.cacheStatus).toMatch(/fwd=stale; fwd-status=304; detail=uncacheable/);
    expect(attacker.body).toBe("/news #1");
    await settle([attacker], testEnv, ["/news"]);
    for (const dc of [otherDc!, attackerDc!]) {
      const victim = await dc.get("/news", { headers: { "x-lang": "fr" } });
      await settle([victim], testEnv, ["/news"]);
      expect(victim.body, dc.name).not.toBe("/news #1");
      expect(victim.headers.get("vary"), dc.name).toBe("x-lang");
    }
    expect(await origin.count()).toBe(3);
  });

  it("RFC 9111 §5.2.2.7: a qualified private that names no valid field list covers the whole response: never shared", async () => {
    for (const cc of ["max-age=60, private=", 'max-age=60, private=""', 'max-age=60, private="x-user" junk']) {
      const origin = await testOrigin({ headers: { "cache-control": cc, "x-user": "ann" } });
      const testEnv = edgeEnv(origin.url);
      const [ownerDc, otherDc] = dataCenters(2, testEnv);
      // Coordinators are keyed by URL and live as long as the file: each case has its own path.
      const p = `/account-${crypto.randomUUID().slice(0, 8)}`;
      const owner = await ownerDc!.get(p);
      expect(owner.headers.get("x-user"), cc).toBe("ann");
      const victims = [await ownerDc!.get(p), await otherDc!.get(p)];
      await settle([owner, ...victims], testEnv, [p]);
      for (const victim of victims) expect(victim.cacheStatus, cc).not.toMatch(/; hit/);
      expect(await origin.count(), cc).toBe(3);
    }
  });

  it("CPDoS, non-ASCII header: an attacker's `X-A: café`, refused by the origin with a 400 it marks max-age, is never the page of a later visitor", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" }, refuseNonAscii: true });
    const testEnv = edgeEnv(origin.url);
    const [attackerDc, otherDc] = dataCenters(2, testEnv);
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    // workerd sends the value on as UTF-8 (and warns that a browser would refuse it).
    const attack = await attackerDc!.get(p, { headers: { "x-a": "caf\u00e9" } });
    expect(attack.status).toBe(400);
    const victims = [await otherDc!.get(p), await attackerDc!.get(p)];
    await settle([attack, ...victims], testEnv, [p]);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, `${p} #2`]);
    expect(await origin.count()).toBe(2);
  });

  it("CPDoS, header count: an attacker's 120 one-byte headers answered 400 max-age (Apache's LimitRequestFields) are never the page of a later visitor", async () => {
    const origin = await testOrigin({ status: 400, headers: { "cache-control": "max-age=60" } });
    const testEnv = edgeEnv(origin.url);
    const [attackerDc, otherDc] = dataCenters(2, testEnv);
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const many = Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`x-${i}`, "1"]));
    const attack = await attackerDc!.get(p, { headers: many });
    expect(attack.status).toBe(400);
    await origin.set({ status: 200 });
    const victims = [await otherDc!.get(p), await attackerDc!.get(p)];
    await settle([attack, ...victims], testEnv, [p]);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, `${p} #2`]);
    expect(await origin.count()).toBe(2);
  });

  it("CPDoS, request-caused statuses: a 406 (the attacker's Accept), 412 or 416 marked max-age is never the page of a later visitor", async () => {
    for (const status of [406, 412, 416]) {
      // The origin refuses the attacker's request; its next answers are the page.
      const origin = await testOrigin({ status, headers: { "cache-control": "max-age=60", vary: "Accept-Encoding" } });
      const testEnv = edgeEnv(origin.url);
      const [attackerDc, otherDc] = dataCenters(2, testEnv);
      const p = `/${crypto.randomUUID().slice(0, 8)}`;
      const attack = await attackerDc!.get(p, { headers: { accept: "application/json" } });
      expect(attack.status).toBe(status);
      await origin.set({ status: 200 });
      const victims = [await otherDc!.get(p), await attackerDc!.get(p)];
      await settle([attack, ...victims], testEnv, [p]);
      for (const victim of victims) expect([victim.status, victim.body], String(status)).toEqual([200, `${p} #2`]);
      expect(await origin.count()).toBe(2);
    }
  });

  it("Authentication-Info reaches the client that asked, never a later visitor", async () => {
    const personal = { "authentication-info": 'nextnonce="ann-nonce"' };
    for (const [name, value] of Object.entries(personal)) {
      const origin = await testOrigin({ headers: { "cache-control": "max-age=60", [name]: value } });
      const testEnv = edgeEnv(origin.url);
      const [attackerDc, otherDc] = dataCenters(2, testEnv);
      const p = `/page-${crypto.randomUUID().slice(0, 8)}`;
      const attacker = await attackerDc!.get(p);
      expect(attacker.headers.get(name), name).toBe(value);
      await origin.set({ headers: { "cache-control": "max-age=60" } });
      const victims = [await attackerDc!.get(p), await otherDc!.get(p)];
      await settle([attacker, ...victims], testEnv, [p]);
      for (const victim of victims) expect(victim.headers.get(name), name).toBeNull();
    }
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60", "proxy-authentication-info": "x=1" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    expect(
      (await dc!.get(`/proxy-auth-${crypto.randomUUID().slice(0, 8)}`)).headers.get("proxy-authentication-info"),
    ).toBeNull();
  });

  it("RFC 9110 §5.1: an origin field name that is not a token is dropped, never a 500 for the visitors after", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" }, rawHeaderLines: "X Bad: 1\r\n" });
    const testEnv = edgeEnv(origin.url);
    const [attackerDc, otherDc] = dataCenters(2, testEnv);
    const attacker = await attackerDc!.get("/malformed");
    // workerd may refuse the answer itself (502) or hand it over: the field never reaches anyone.
    expect([200, 502]).toContain(attacker.status);
    const victims = [await attackerDc!.get("/malformed"), await otherDc!.get("/malformed")];
    await settle([attacker, ...victims], testEnv, ["/malformed"]);
    for (const victim of victims) {
      expect(victim.status).not.toBe(500);
      expect([...victim.headers.keys()].some((name) => name.includes(" "))).toBe(false);
    }
  });

  // A gradual deployment (or a rollback) runs two herdless versions over one data center's
  // cache: an entry the other version wrote, or a damaged one, must read as a miss.
  for (const [what, fields] of [
    ["of another entry format version", { v: 3 }],
    ["with damaged fields", { headers: "content-type: text/plain" }],
  ] as const) {
    it(`an entry ${what} in the Cache API is a miss, never a failed request for every visitor until it expires`, async () => {
      const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
      const clock = new ManualClock(Date.now());
      const testEnv = edgeEnv(origin.url);
      const [dc, otherDc] = dataCenters(2, testEnv, clock);
      const p = `/${crypto.randomUUID().slice(0, 8)}`;
      await useInCoordinators(testEnv, [p], clock, `guard-${crypto.randomUUID()}`);
      const key = `GET ${EDGE}${p}`;
      const { body: _body, ...meta } = testEntry(key, clock.now(), { url: `${EDGE}${p}` });
      const cache = await caches.open(dc!.name);
      await cache.put(
        new Request(cacheUrlFor(key)),
        new Response("the other version's page", {
          headers: {
            [ENTRY_META_HEADER]: btoa(JSON.stringify({ ...meta, ...fields })),
            "cache-control": "max-age=600",
          },
        }),
      );
      const first = await dc!.get(p);
      await first.settled;
      expect([first.status, first.body]).toEqual([200, `${p} #1`]);
      for (const victim of [await dc!.get(p), await otherDc!.get(p)]) {
        expect([victim.status, victim.body]).toEqual([200, `${p} #1`]);
        expect(victim.cacheStatus).toMatch(/^herdless; hit/);
      }
      expect(await origin.count()).toBe(1);
    });
  }
});
