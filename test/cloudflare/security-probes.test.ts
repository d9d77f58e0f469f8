import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { ADMIN_TOKEN, dataCenters, edgeEnv, settle, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * The attack probes a reviewer runs against a shared cache, through the Worker in workerd
 * with two data centers: each test is the attacker's request, then the victims' (in the
 * attacker's data center and in another one, which the key's coordinator serves). The Node
 * twin is test/node/security-probes.test.ts. (A body on GET cannot be built in workerd:
 * its Request refuses one; smuggling and oversized requests are refused by Cloudflare's
 * edge before a Worker runs.)
 */

async function setup(headers: Record<string, string> = { "cache-control": "max-age=60" }, config = {}) {
  const origin = await testOrigin({ headers });
  const clock = new ManualClock(Date.now());
  const testEnv = edgeEnv(origin.url, config);
  const [attackerDc, otherDc] = dataCenters(2, testEnv, clock);
  // Keys (and so coordinator objects) are shared by every test in the file: each test has its own path.
  const p = `/${crypto.randomUUID().slice(0, 8)}`;
  // The key's coordinator keeps the test's time too (a Clock cannot cross RPC).
  await useInCoordinators(testEnv, [p], clock, `guard-${crypto.randomUUID()}`);
  return { origin, clock, testEnv, attackerDc: attackerDc!, otherDc: otherDc!, p };
}

describe("attack probes (Worker)", () => {
  it("`//evil.test/p` is a path on the site, asked of the origin as it is, never the key of /p", async () => {
    const { origin, attackerDc, otherDc, p } = await setup();
    const attack = await attackerDc.get(`//evil.test${p}`);
    expect(attack.body).toBe(`//evil.test${p} #1`);
    const victim = await otherDc.get(p);
    expect(victim.body).toBe(`${p} #2`);
    expect((await origin.stats()).requests.map((r) => r.path)).toEqual([`//evil.test${p}`, p]);
  });

  it("scheme overrides never reach the origin, and X-Forwarded-Proto is the scheme the client used", async () => {
    const { origin, attackerDc, otherDc, p } = await setup();
    const forged = {
      "x-forwarded-ssl": "on",
      "front-end-https": "on",
      "x-url-scheme": "http",
      "x-scheme": "http",
      "x-proxied-https": "off",
    };
    await attackerDc.get(p, { headers: { ...forged, "x-forwarded-proto": "http", "x-forwarded-host": "evil.test" } });
    const victim = await otherDc.get(p);
    expect(victim.body).toBe(`${p} #1`);
    const seen = (await origin.stats()).requests[0]!.headers;
    for (const name of [...Object.keys(forged), "x-forwarded-host"]) expect(seen[name], name).toBeUndefined();
    expect(seen["x-forwarded-proto"]).toBe("https");
  });

  it("RFC 8586: a request carrying herdless's own CDN-Loop entry (one of its origin requests come back: origin.url pointing at itself) is a 508 naming the loop, never fetched", async () => {
    const { origin, attackerDc, otherDc, p } = await setup();
    await attackerDc.get(p, { headers: { "cdn-loop": "cloudflare" } });
    const sent = (await origin.stats()).requests[0]!.headers["cdn-loop"];
    expect(sent).toMatch(/^cloudflare, herdless; o=[0-9a-f]{8}$/);
    for (const dc of [attackerDc, otherDc]) {
      const back = await dc.get(`${p}/again`, { headers: { "cdn-loop": String(sent) } });
      expect(back.status).toBe(508);
      expect(back.body).toContain("request loop");
    }
    // Another CDN's entry, or another herdless's (another origin), is no loop.
    expect((await otherDc.get(p, { headers: { "cdn-loop": "cloudflare, herdless; o=00000000" } })).status).toBe(200);
    expect(await origin.count()).toBe(1);
  });

  it("the admin API spelled with dot segments is the admin API: never fetched from the origin, never stored", async () => {
    const { origin, attackerDc } = await setup(undefined, { admin: { token: ADMIN_TOKEN } });
    for (const path of [
      "/x/../__herdless/stats",
      "/%2e%2e/__herdless/stats",
      "//__herdless/stats",
      "/%5F_herdless/stats",
    ])
      expect((await attackerDc.get(path)).status, path).toBe(401);
    expect((await attackerDc.get("/__herdless")).status).toBe(308);
    // The operator's own request with a doubled slash is the admin API, its token never the origin's.
    const doubled = await attackerDc.get("//__herdless/stats", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(doubled.status).toBe(200);
    expect(await origin.count()).toBe(0);
  });

  it("HEAD then GET: the attacker's HEAD fills with a GET, so the victims get the whole body", async () => {
    const { origin, attackerDc, otherDc, p } = await setup();
    const head = await attackerDc.get(p, { method: "HEAD" });
    expect(head.body).toBe("");
    for (const victim of [await attackerDc.get(p), await otherDc.get(p)]) expect(victim.body).toBe(`${p} #1`);
    expect((await origin.stats()).requests.map((r) => r.method)).toEqual(["GET"]);
  });

  it("Range first: the range is cut from a full fill, the victims get the full 200; an origin's 206 is never stored", async () => {
    const { origin, attackerDc, otherDc, p } = await setup();
    const attack = await attackerDc.get(p, { headers: { range: "bytes=0-1" } });
    expect(attack.status).toBe(206);
    expect(attack.body).toBe(p.slice(0, 2));
    for (const victim of [await attackerDc.get(p), await otherDc.get(p)]) {
      expect(victim.status).toBe(200);
      expect(victim.body).toBe(`${p} #1`);
    }
    expect((await origin.stats()).requests[0]!.headers.range).toBeUndefined();
    const partial = `${p}-partial`;
    await origin.set({ paths: { [partial]: { status: 206, headers: { "content-range": "bytes 0-1/10" } } } });
    await attackerDc.get(partial);
    const victim = await otherDc.get(partial);
    expect(victim.cacheStatus).not.toMatch(/hit/);
    expect(await origin.count(partial)).toBe(2);
  });

  it("preconditions and ranges on a fill (If-Match, If-Unmodified-Since, If-Range, an unsatisfiable Range) are answered from the full copy: the attacker's 412 or 416 is never the victims'", async () => {
    const { origin, attackerDc, otherDc, p } = await setup({ "cache-control": "max-age=60", etag: '"v1"' });
    const attacks: [string, Record<string, string>, number][] = [
      [`${p}-1`, { "if-match": '"other"' }, 412],
      [`${p}-2`, { "if-unmodified-since": "Mon, 01 Jan 1990 00:00:00 GMT" }, 200],
      [`${p}-3`, { "if-range": '"other"', range: "bytes=0-1" }, 200],
      [`${p}-4`, { range: "bytes=999999-" }, 416],
    ];
    for (const [path, headers, status] of attacks) {
      expect((await attackerDc.get(path, { headers })).status, path).toBe(status);
      for (const victim of [await attackerDc.get(path), await otherDc.get(path)])
        expect([victim.status, victim.body], path).toEqual([
          200,
          `${path} #${attacks.findIndex(([a]) => a === path) + 1}`,
        ]);
    }
    const seen = (await origin.stats()).requests;
    expect(seen).toHaveLength(4);
    for (const request of seen)
      expect(Object.keys(request.headers).filter((n) => n.startsWith("if-") || n === "range")).toEqual([]);
  });

  it("Vary names in any case and spacing select by the victim's own header value, never the attacker's", async () => {
    const { attackerDc, otherDc, p } = await setup({
      "cache-control": "max-age=60",
      vary: " X-LANG , accept-encoding",
    });
    const attack = await attackerDc.get(p, { headers: { "x-lang": "evil" } });
    expect(attack.body).toBe(`${p} #1`);
    for (const victim of [await attackerDc.get(p, { headers: { "X-Lang": "en" } }), await otherDc.get(p)])
      expect(victim.body).not.toBe(`${p} #1`);
  });

  it.each(['"X-Lang"', "X-Lang;q=1", "X Lang"])(
    "RFC 9110 §12.5.5: a Vary member that names no field (%s) is never stored as if it selected nothing: the attacker's page is not the victims'",
    async (vary) => {
      const { attackerDc, otherDc, p } = await setup({ "cache-control": "max-age=60", vary });
      const attack = await attackerDc.get(p, { headers: { "x-lang": "evil" } });
      expect(attack.body).toBe(`${p} #1`);
      for (const victim of [await attackerDc.get(p, { headers: { "x-lang": "en" } }), await otherDc.get(p)]) {
        expect(victim.body).not.toBe(`${p} #1`);
        expect(victim.cacheStatus).not.toMatch(/hit/);
      }
    },
  );

  it.each(["Host", "X-Forwarded-Proto", "Via"])(
    "RFC 9111 §4.1: a page that varies on %s (a header herdless sets) is a hit for the next visitors",
    async (vary) => {
      const { origin, attackerDc, otherDc, p } = await setup({ "cache-control": "max-age=60", vary });
      expect((await attackerDc.get(p)).cacheStatus).toMatch(/fwd=uri-miss/);
      expect((await attackerDc.get(p)).cacheStatus).toMatch(/hit/);
      expect((await otherDc.get(p)).body).toBe(`${p} #1`);
      if (vary !== "Via")
        expect((await attackerDc.get(p, { headers: { [vary]: "forged" } })).cacheStatus).toMatch(/hit/);
      expect(await origin.count()).toBe(1);
    },
  );

  it("RFC 9111 §3.5: a request with Authorization or Cookie is never given the shared copy, nor its answer to others", async () => {
    const { origin, attackerDc, otherDc, p } = await setup();
    await attackerDc.get(p, { headers: { authorization: "Bearer attacker" } });
    await attackerDc.get(p, { headers: { cookie: "session=attacker" } });
    const victim = await otherDc.get(p);
    expect(victim.body).toBe(`${p} #3`);
    const [first, second] = (await origin.stats()).requests;
    expect(first!.headers.authorization).toBe("Bearer attacker");
    expect(second!.headers.cookie).toBe("session=attacker");
  });

  it.each(["max-age=60", "public, max-age=60"])(
    "RFC 9111 §3.5: a signed-in request arriving while an anonymous fetch runs (%s) gets its own answer, never the anonymous page, in the same data center and another",
    async (cacheControl) => {
      const { origin, attackerDc, otherDc, p } = await setup({ "cache-control": cacheControl });
      await origin.set({ mode: "hold" });
      const anonymous = attackerDc.get(p);
      await origin.waitFor({ held: 1 });
      const signedIn = [attackerDc, otherDc].map((dc, i) =>
        dc.get(p, { headers: { authorization: `Bearer victim-${i}` } }),
      );
      // Real time for ordering only: the signed-in requests reach the running fetch before it answers.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await origin.set({ mode: "up" });
      await origin.release();
      expect((await anonymous).body).toBe(`${p} #1`);
      for (const own of await Promise.all(signedIn)) {
        expect(own.body).not.toBe(`${p} #1`);
        expect(own.cacheStatus).not.toContain("collapsed");
      }
      const asked = (await origin.stats()).requests.map((request) => request.headers.authorization);
      expect(asked.sort()).toEqual(["Bearer victim-0", "Bearer victim-1", undefined]);
    },
  );

  it("cache deception: a victim's personal page under a static-looking URL (forced TTL route) is never served to the attacker", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    const testEnv = edgeEnv(origin.url, { routes: [{ match: `${p}/*`, forceTtlMs: 86_400_000 }] });
    const clock = new ManualClock(Date.now());
    const [victimDc, attackerDc] = dataCenters(2, testEnv, clock);
    const lures = [`${p}/account.css`, `${p}/..%2faccount`];
    const targets = [...lures, ...lures.map((l) => `${l}?c=1`)];
    // The keys' coordinators store with the route's forced TTL, as the deployment's would.
    await useInCoordinators(testEnv, targets, clock, `guard-${crypto.randomUUID()}`);
    for (const lure of lures) {
      await victimDc!.get(lure, { headers: { authorization: "Bearer victim" } });
      await victimDc!.get(`${lure}?c=1`, { headers: { cookie: "session=victim" } });
    }
    for (const target of targets) {
      const attacker = await attackerDc!.get(target);
      expect(attacker.cacheStatus, target).toMatch(/fwd=uri-miss; fwd-status=200; ttl=86400; stored/);
    }
    const seen = (await origin.stats()).requests;
    expect(seen.filter((r) => r.headers.authorization || r.headers.cookie)).toHaveLength(4);
    expect(seen).toHaveLength(8);
  });

  it("RFC 9111 §5.2: `max-age=3600; private` (a `;` slip) still says private: the owner's page is never served stale to the victims", async () => {
    const headers = { "cache-control": "max-age=3600; private", "x-user": "ann" };
    const config = { defaults: { staleWhileRevalidateMs: 60_000, staleIfErrorMs: 600_000 } };
    const { origin, testEnv, attackerDc, otherDc, p } = await setup(headers, config);
    const owner = await attackerDc.get(p);
    expect(owner.headers.get("x-user")).toBe("ann");
    const victims = [await attackerDc.get(p), await otherDc.get(p)];
    await settle([owner, ...victims], testEnv, [p]);
    for (const victim of victims) expect(victim.cacheStatus).not.toMatch(/hit|stale/);
    expect(await origin.count()).toBe(3);
  });

  it("request smuggling to the origin: a DELETE or OPTIONS body that is a whole request reaches the origin framed, never as a second request", async () => {
    const { origin, attackerDc, otherDc, p } = await setup();
    const hidden = "GET /internal-admin HTTP/1.1\r\nHost: internal\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n";
    for (const method of ["DELETE", "OPTIONS"]) {
      // A stream: sent without a Content-Length, as a chunked upload is.
      const body = new Blob([hidden]).stream();
      expect((await attackerDc.get(p, { method, body, duplex: "half" } as RequestInit)).status, method).toBe(200);
    }
    expect((await otherDc.get(p)).status).toBe(200);
    const seen = (await origin.stats()).requests.map((r) => `${r.method} ${r.path}`);
    expect(seen).toEqual([`DELETE ${p}`, `OPTIONS ${p}`, `GET ${p}`]);
  });

  it("W3C Edge Architecture §3: a Surrogate-Control that only asks for ESI processing never overrides Cache-Control: private", async () => {
    const { attackerDc, otherDc, p } = await setup(
      { "cache-control": "private, max-age=60", "surrogate-control": 'content="ESI/1.0"' },
      { defaults: { defaultTtlMs: 60_000 } },
    );
    expect((await otherDc.get(p)).body).toBe(`${p} #1`);
    for (const [n, dc] of [attackerDc, otherDc].entries()) {
      const attacker = await dc.get(p);
      expect(attacker.cacheStatus).not.toMatch(/hit/);
      expect(attacker.body).toBe(`${p} #${n + 2}`);
    }
  });

  it("cache-poisoned DoS: a 404 a client provokes (a header the origin rejects) is not stored for the route's TTL", async () => {
    const { origin, attackerDc, otherDc, p } = await setup({}, { defaults: { defaultTtlMs: 60_000 } });
    // The attacker's header makes the origin answer 404, without freshness; the victims' does not.
    await origin.set({ status: 404 });
    const attack = await attackerDc.get(p, { headers: { "x-api-version": "666" } });
    expect(attack.status).toBe(404);
    await origin.set({ status: 200 });
    const victims = [await attackerDc.get(p), await otherDc.get(p)];
    for (const victim of victims) expect(victim.status).toBe(200);
    expect(victims[1]!.body).toBe(victims[0]!.body);
  });

  it("a Vary'd header of 12 KB of spaces costs no more CPU than its length: the victims are served at once", async () => {
    // workerd's regular expressions fall back to a linear engine on excessive backtracking, so
    // this holds on the Worker with the old normalization too; Node's did not (its twin).
    const { attackerDc, otherDc, p } = await setup({ "cache-control": "max-age=60", vary: "Accept-Language" });
    expect((await attackerDc.get(p, { headers: { "accept-language": "en" } })).status).toBe(200);
    const started = performance.now();
    const bomb = await attackerDc.get(p, { headers: { "accept-language": `en${" ".repeat(12 * 1024)}x` } });
    expect(bomb.status).toBe(200);
    const victims = [attackerDc, otherDc].map((dc) => dc.get(p, { headers: { "accept-language": "en" } }));
    for (const victim of await Promise.all(victims)) expect(victim.body).toBe(`${p} #1`);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it("RFC 9111 §4.2.4: a must-revalidate copy is never served stale when the origin fails, stale-if-error or not", async () => {
    const cc = "max-age=1, must-revalidate, stale-if-error=600";
    const { origin, clock, testEnv, attackerDc, otherDc, p } = await setup(
      { "cache-control": cc },
      { defaults: { staleIfErrorMs: 600_000 } },
    );
    const fill = await attackerDc.get(p);
    expect(fill.status).toBe(200);
    clock.advance(5_000);
    await origin.set({ status: 500 });
    const victims = [await attackerDc.get(p), await otherDc.get(p)];
    await settle([fill, ...victims], testEnv, [p]);
    for (const victim of victims) {
      expect(victim.status).toBe(500);
      expect(victim.cacheStatus).not.toMatch(/stale-if-error/);
    }
  });

  it("one path's query variants never open the breaker: 8 searches of their own, each a 504, and the victim's cold page is served", async () => {
    // An expensive search its gateway answers 504 for: every query is a key of its own, past
    // the per-key backoff, but one resource of the origin's (the breaker counts paths).
    const { origin, clock, testEnv, attackerDc, otherDc, p } = await setup();
    await origin.set({ paths: { [`${p}/search`]: { status: 504 } } });
    const paths = Array.from({ length: 8 }, (_, i) => `${p}/search?q=${i}`);
    await useInCoordinators(testEnv, [p, ...paths], clock, `guard-${crypto.randomUUID()}`);
    for (const path of paths) {
      const attack = await attackerDc.get(path);
      await attack.settled;
      expect(attack.status).toBe(504);
    }
    const victim = await otherDc.get(p);
    expect([victim.status, victim.body]).toEqual([200, `${p} #9`]);
  });

  it("junk request headers the origin refuses, on a few URLs, never open the breaker: its 431 goes to their sender alone", async () => {
    // A head within herdless's own 16 KiB (security-limits.test.ts: past it, herdless's 431)
    // still reaches a Node origin past its 16 KiB, once herdless has added its own fields (Via,
    // CDN-Loop, X-Forwarded-Proto…) and the origin URL's path: the origin's 431, never stored.
    const { origin, clock, testEnv, attackerDc, otherDc, p } = await setup();
    const paths = Array.from({ length: 6 }, (_, i) => `${p}/junk${i}`);
    await useInCoordinators(testEnv, [p, ...paths], clock, `guard-${crypto.randomUUID()}`);
    const attacks = [];
    for (const path of paths) {
      const junk = { "x-junk": "j".repeat(16 * 1024 - 60 - path.length) };
      const attack = await attackerDc.get(path, { headers: junk });
      await attack.settled;
      attacks.push(attack);
    }
    const victim = await otherDc.get(p);
    expect([victim.status, victim.body]).toEqual([200, `${p} #1`]);
    for (const attack of attacks)
      expect([attack.status, attack.cacheStatus]).toEqual([
        431,
        "herdless; fwd=uri-miss; fwd-status=431; detail=uncacheable",
      ]);
    expect(await origin.count()).toBe(1);
  });
});
