import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import {
  AttemptLimiter,
  handleAdmin,
  tokenMatches,
  statsSnapshot,
  type AdminContext,
  type AdminRequest,
} from "./admin.ts";
import { addressBlock, SESSION_TTL_MS } from "./auth.ts";
import { isJsonMediaType } from "./media-type.ts";
import { Metrics } from "./metrics.ts";
import { LocalPurgeRegistry, PurgeUnconfirmedError } from "./purge.ts";

const TOKEN = "0123456789abcdef-token";

function setup(token: string | null = TOKEN) {
  const clock = new ManualClock(1_000_000);
  const purges = new LocalPurgeRegistry(clock, (url) => [`GET ${url}`]);
  const metrics = new Metrics(clock);
  const ctx: AdminContext = {
    token: token ?? undefined,
    purges,
    tokenHint: "--admin-token",
    now: () => clock.now(),
    attempts: new AttemptLimiter(),
    stats: async () =>
      statsSnapshot(
        metrics.view(),
        { breaker: "closed", inFlight: 0, queued: 0 },
        { runtime: "node", mode: "local", startedAt: 0, now: clock.now(), scope: { of: "process" } },
      ),
  };
  return { ctx, purges, metrics, clock };
}

function req(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body = "",
  more: Partial<AdminRequest> = {},
): AdminRequest {
  return {
    method,
    path,
    headers: new Headers(headers),
    text: async () => body,
    https: false,
    client: "192.0.2.1",
    ...more,
  };
}

/** Signs in as the operator's browser does; returns the whole Set-Cookie and the `name=value` pair. */
async function signIn(ctx: AdminContext, more: Partial<AdminRequest> = {}) {
  const login = await handleAdmin(req("POST", "/__herdless/login", {}, `token=${TOKEN}`, more), ctx);
  expect(login.status).toBe(303);
  const setCookie = login.headers.find(([n]) => n === "set-cookie")![1];
  return { setCookie, cookie: setCookie.split(";")[0]! };
}

const header = (res: { headers: [string, string][] }, name: string) => res.headers.find(([n]) => n === name)?.[1];

const bearer = { authorization: `Bearer ${TOKEN}` };
const jsonBody = { ...bearer, "content-type": "application/json" };

describe("admin API", () => {
  it("is disabled without a token, and says how to enable it", async () => {
    const res = await handleAdmin(req("GET", "/__herdless/stats", bearer), setup(null).ctx);
    expect(res.status).toBe(404);
    expect(res.body).toContain("no admin token is configured (--admin-token)");
  });

  it.each([[{}], [{ authorization: "Bearer wrong" }], [{ authorization: `Basic ${TOKEN}` }]])(
    "refuses %j with 401 and purges nothing",
    async (headers) => {
      const t = setup();
      const res = await handleAdmin(
        req("POST", "/__herdless/purge", { ...headers, "content-type": "application/json" }, '{"all":true}'),
        t.ctx,
      );
      expect(res.status).toBe(401);
      expect(t.purges.current().all).toBeUndefined();
    },
  );

  it("purges with the right token", async () => {
    const t = setup();
    const res = await handleAdmin(req("POST", "/__herdless/purge", jsonBody, '{"tags":["a"],"soft":true}'), t.ctx);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ purged: { tags: ["a"], soft: true } });
    expect(t.purges.current().tags.a).toEqual({ at: 1_000_000, soft: true });
  });

  it("a purge recorded but not confirmed by every process is a 503 saying so and naming them, never a 200", async () => {
    const t = setup();
    t.ctx.purges = {
      current: () => t.purges.current(),
      purge: () =>
        Promise.reject(new PurgeUnconfirmedError("purge recorded, but 1 process(es) … (h:1:ab)", ["h:1:ab"])),
    };
    const res = await handleAdmin(req("POST", "/__herdless/purge", jsonBody, '{"tags":["a"]}'), t.ctx);
    expect(res.status).toBe(503);
    expect(header(res, "retry-after")).toBe("1");
    expect(JSON.parse(res.body)).toEqual({
      error: "herdless admin: purge recorded, but 1 process(es) … (h:1:ab)",
      recorded: { tags: ["a"], soft: false },
      unconfirmed: ["h:1:ab"],
    });
  });

  it("answers a bad purge body with 400 naming the problem, and a non-JSON one with 415", async () => {
    const t = setup();
    expect((await handleAdmin(req("POST", "/__herdless/purge", jsonBody, "{nope"), t.ctx)).status).toBe(400);
    const bad = await handleAdmin(req("POST", "/__herdless/purge", jsonBody, '{"urls":"x"}'), t.ctx);
    expect(bad.status).toBe(400);
    expect(bad.body).toContain("non-empty array");
    expect((await handleAdmin(req("POST", "/__herdless/purge", bearer, '{"all":true}'), t.ctx)).status).toBe(415);
  });

  it("serves stats as JSON", async () => {
    const t = setup();
    t.metrics.count("hit", "k");
    t.metrics.count("miss", "k");
    const stats = JSON.parse((await handleAdmin(req("GET", "/__herdless/stats", bearer), t.ctx)).body);
    expect(stats).toMatchObject({
      requests: 2,
      hitRatio: 0.5,
      breaker: "closed",
      topKeys: [{ key: "k", requests: 2 }],
    });
  });

  it("signs the dashboard in with a cookie, scoped to the admin path", async () => {
    const t = setup();
    expect((await handleAdmin(req("GET", "/__herdless/"), t.ctx)).status).toBe(401);
    expect((await handleAdmin(req("POST", "/__herdless/login", {}, "token=wrong"), t.ctx)).status).toBe(401);
    const login = await handleAdmin(req("POST", "/__herdless/login", {}, `token=${TOKEN}`), t.ctx);
    expect(login.status).toBe(303);
    const cookie = login.headers.find(([n]) => n === "set-cookie")![1];
    expect(cookie).toContain("HttpOnly; SameSite=Strict");
    const page = await handleAdmin(req("GET", "/__herdless/", { cookie: cookie.split(";")[0]! }), t.ctx);
    expect(page.status).toBe(200);
    expect(page.body).toContain("<h1>herdless</h1>");
    expect(page.body).not.toMatch(/(src|href)="https?:/);
  });

  it("answers HEAD on a route read with GET as that GET without its body, and any method a route does not answer with 405 and Allow", async () => {
    const t = setup();
    const get = await handleAdmin(req("GET", "/__herdless/stats", bearer), t.ctx);
    const head = await handleAdmin(req("HEAD", "/__herdless/stats", bearer), t.ctx);
    expect(head).toEqual({ ...get, body: "" });
    expect(await handleAdmin(req("HEAD", "/__herdless/stats"), t.ctx)).toMatchObject({ status: 401, body: "" });
    expect(await handleAdmin(req("HEAD", "/__herdless/"), t.ctx)).toMatchObject({ status: 401, body: "" });
    for (const [method, path, allow] of [
      ["PUT", "/__herdless/stats", "GET, HEAD"],
      ["DELETE", "/__herdless/", "GET, HEAD"],
      ["POST", "/__herdless/stats", "GET, HEAD"],
      ["GET", "/__herdless/purge", "POST"],
      ["HEAD", "/__herdless/purge", "POST"],
      ["GET", "/__herdless/login", "POST"],
    ] as const) {
      const answer = await handleAdmin(req(method, path, bearer), t.ctx);
      expect(answer.status, `${method} ${path}`).toBe(405);
      expect(header(answer, "allow"), `${method} ${path}`).toBe(allow);
      expect(answer.body).toContain(`not ${method}`);
    }
    // A wrong token sent with a method the route does not answer is never checked: no brake.
    for (let i = 0; i < 20; i++)
      await handleAdmin(req("PUT", "/__herdless/stats", { authorization: "Bearer wrong-wrong-wrong" }), t.ctx);
    expect((await handleAdmin(req("GET", "/__herdless/stats", bearer), t.ctx)).status).toBe(200);
    expect((await handleAdmin(req("GET", "/__herdless/nothing", bearer), t.ctx)).status).toBe(404);
  });

  it("compares tokens exactly", async () => {
    expect(await tokenMatches(TOKEN, TOKEN)).toBe(true);
    expect(await tokenMatches(`${TOKEN}x`, TOKEN)).toBe(false);
    expect(await tokenMatches(TOKEN.slice(0, -1), TOKEN)).toBe(false);
    expect(await tokenMatches(null, TOKEN)).toBe(false);
  });
});

describe("admin API under attack", () => {
  const purgeAll = '{"all":true}';

  it("a cross-site form posting `text/plain; application/json` with the victim's cookie purges nothing", async () => {
    const t = setup();
    const { cookie } = await signIn(t.ctx);
    // Attacker's page: <form enctype="text/plain"> cannot set application/json, so it tries this.
    for (const contentType of ["text/plain; application/json", "application/json; text/plain", "application/jsonx"]) {
      const forged = await handleAdmin(
        req("POST", "/__herdless/purge", { cookie, "content-type": contentType, "x-herdless-request": "1" }, purgeAll),
        t.ctx,
      );
      expect(forged.status).toBe(415);
    }
    // The same media type check holds with a bearer token.
    const scripted = await handleAdmin(
      req("POST", "/__herdless/purge", { ...bearer, "content-type": "text/plain; application/json" }, purgeAll),
      t.ctx,
    );
    expect(scripted.status).toBe(415);
    // Victim: nothing was purged.
    expect(t.purges.current().all).toBeUndefined();
    expect(isJsonMediaType("Application/JSON; charset=utf-8")).toBe(true);
    expect(isJsonMediaType('application/json; charset="utf-8"')).toBe(true);
  });

  it("a cookie-authenticated purge without a same-origin signal is refused; the dashboard's own request works", async () => {
    const t = setup();
    const { cookie } = await signIn(t.ctx);
    const json = { cookie, "content-type": "application/json" };
    const signals: Record<string, string>[] = [
      { "sec-fetch-site": "cross-site" },
      { "sec-fetch-site": "same-site" },
      {},
    ];
    for (const signal of signals) {
      const res = await handleAdmin(req("POST", "/__herdless/purge", { ...json, ...signal }, purgeAll), t.ctx);
      expect(res.status).toBe(403);
    }
    // A cross-site request that somehow carries the custom header is still cross-site.
    const both = { ...json, "sec-fetch-site": "cross-site", "x-herdless-request": "dashboard" };
    expect((await handleAdmin(req("POST", "/__herdless/purge", both, purgeAll), t.ctx)).status).toBe(403);
    expect(t.purges.current().all).toBeUndefined();
    // The operator's dashboard: same-origin by fetch metadata, or the custom header.
    const mine = { ...json, "sec-fetch-site": "same-origin" };
    expect((await handleAdmin(req("POST", "/__herdless/purge", mine, '{"tags":["a"]}'), t.ctx)).status).toBe(200);
    const custom = { ...json, "x-herdless-request": "dashboard" };
    expect((await handleAdmin(req("POST", "/__herdless/purge", custom, purgeAll), t.ctx)).status).toBe(200);
    expect(t.purges.current().all).toBeDefined();
  });

  it("the session cookie is an expiring HMAC'd session, not the token: it cannot be forged, stretched or reused after a token change", async () => {
    const t = setup();
    const { setCookie, cookie } = await signIn(t.ctx);
    expect(setCookie).not.toContain(TOKEN);
    expect(setCookie).not.toContain(encodeURIComponent(TOKEN));
    expect(setCookie).toBe(`${cookie}; Path=/__herdless/; Max-Age=${SESSION_TTL_MS / 1000}; HttpOnly; SameSite=Strict`);
    expect((await signIn(t.ctx, { https: true })).setCookie).toMatch(/; Secure$/);
    const [expires, nonce, signature] = cookie.slice("herdless_admin=".length).split(".");
    const page = (c: string) => handleAdmin(req("GET", "/__herdless/stats", { cookie: c }), t.ctx);
    expect((await page(cookie)).status).toBe(200);
    // Attacker stretches the expiry, or keeps the expiry and invents a signature.
    expect((await page(`herdless_admin=${Number(expires) + SESSION_TTL_MS}.${nonce}.${signature}`)).status).toBe(401);
    expect((await page(`herdless_admin=${expires}.${nonce}.${"A".repeat(43)}`)).status).toBe(401);
    // The victim's own session ends at its expiry.
    t.clock.advance(SESSION_TTL_MS);
    expect((await page(cookie)).status).toBe(401);
    // A new token ends every session signed with the old one.
    const fresh = (await signIn(t.ctx)).cookie;
    const rotated = { ...t.ctx, token: `${TOKEN}-rotated` };
    expect((await handleAdmin(req("GET", "/__herdless/stats", { cookie: fresh }), rotated)).status).toBe(401);
  });

  it.each([
    "herdless_admin=%zz",
    "herdless_admin=",
    "herdless_admin",
    "=; herdless_admin=%E0%A4%A",
    `herdless_admin=${TOKEN}`,
    "herdless_admin=1.2.3; herdless_admin=..",
  ])("a malformed or raw-token cookie %j is a 401, never a 500", async (cookie) => {
    const t = setup();
    expect((await handleAdmin(req("GET", "/__herdless/stats", { cookie }), t.ctx)).status).toBe(401);
    expect((await handleAdmin(req("GET", "/__herdless/", { cookie }), t.ctx)).status).toBe(401);
  });

  it("the dashboard and its login cannot be framed by another site", async () => {
    const t = setup();
    const { cookie } = await signIn(t.ctx);
    for (const res of [
      await handleAdmin(req("GET", "/__herdless/", { cookie }), t.ctx),
      await handleAdmin(req("GET", "/__herdless/"), t.ctx),
    ]) {
      expect(header(res, "content-security-policy")).toContain("frame-ancestors 'none'");
      expect(header(res, "x-frame-options")).toBe("DENY");
    }
  });

  it("token guesses are slowed down per client, even a right guess while waiting; other clients are not", async () => {
    const t = setup();
    const attacker = { client: "198.51.100.7" };
    const guess = (token: string, who = attacker) =>
      handleAdmin(req("GET", "/__herdless/stats", { authorization: `Bearer ${token}` }, "", who), t.ctx);
    for (let i = 0; i < 10; i++) expect((await guess(`guess-${i}-0123456789`)).status).toBe(401);
    const slowed = await guess("guess-10-0123456789");
    expect(slowed.status).toBe(429);
    expect(header(slowed, "retry-after")).toBe("1");
    // The right token is not even checked while the attacker must wait.
    expect((await guess(TOKEN)).status).toBe(429);
    const login = await handleAdmin(req("POST", "/__herdless/login", {}, `token=${TOKEN}`, attacker), t.ctx);
    expect(login.status).toBe(429);
    // The operator, from elsewhere, is not affected.
    expect((await guess(TOKEN, { client: "192.0.2.50" })).status).toBe(200);
    // Each further wrong guess doubles the wait.
    t.clock.advance(1_000);
    expect((await guess("guess-11-0123456789")).status).toBe(401);
    t.clock.advance(1_000);
    expect((await guess("guess-12-0123456789")).status).toBe(429);
    t.clock.advance(1_000);
    expect((await guess(TOKEN)).status).toBe(200);
  });

  it("attack: another site's page posting the login form (empty, or with guesses) never locks its visitor's address out", async () => {
    const t = setup();
    const victim = { client: "198.51.100.7" };
    const post = (body: string, headers: Record<string, string>) =>
      handleAdmin(req("POST", "/__herdless/login", headers, body, victim), t.ctx);
    for (let i = 0; i < 20; i++) {
      expect((await post("", { "sec-fetch-site": "cross-site" })).status).toBe(403);
      expect((await post(`token=guess-${i}`, { "sec-fetch-site": "same-site" })).status).toBe(403);
      // No token at all is no guess, whoever sends it.
      expect((await post("", {})).status).toBe(401);
    }
    const stats = await handleAdmin(
      req("GET", "/__herdless/stats", { authorization: `Bearer ${TOKEN}` }, "", victim),
      t.ctx,
    );
    expect(stats.status).toBe(200);
    // The operator's own form still signs in.
    expect((await post(`token=${TOKEN}`, { "sec-fetch-site": "same-origin" })).status).toBe(303);
  });

  it("an IPv6 client is braked by its /64: guesses from a new address of the same block are slowed, another block's are not", async () => {
    const t = setup();
    // Before, each guess from a fresh address (a /64 holds 2^64 of them) was one of ten free ones.
    const guess = (token: string, client: string) =>
      handleAdmin(req("GET", "/__herdless/stats", { authorization: `Bearer ${token}` }, "", { client }), t.ctx);
    for (let i = 0; i < 10; i++)
      expect((await guess(`guess-${i}-0123456789`, `2001:db8:7:8::${(i + 1).toString(16)}`)).status).toBe(401);
    expect((await guess("guess-10-0123456789", "2001:db8:7:8:ffff:1:2:3")).status).toBe(429);
    expect((await guess("guess-11-0123456789", "[2001:0db8:0007:0008::abcd]")).status).toBe(429);
    expect((await guess(TOKEN, "2001:db8:7:9::1")).status).toBe(200);
    // An IPv4 client, as it reaches a dual-stack socket, is its own address.
    expect((await guess(TOKEN, "::ffff:192.0.2.50")).status).toBe(200);
  });

  it("addressBlock: IPv6 by its /64 however written, IPv4 (also mapped) and anything else as given", () => {
    expect(addressBlock("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(addressBlock("2001:0db8:0001:0002:0:0:0:1")).toBe("2001:db8:1:2::/64");
    expect(addressBlock("1:2::3:4:5:6:7")).toBe("1:2:0:3::/64");
    expect(addressBlock("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(addressBlock("192.0.2.7")).toBe("192.0.2.7");
    expect(addressBlock("unknown")).toBe("unknown");
  });

  it("remembers a bounded number of guessing clients", () => {
    const limiter = new AttemptLimiter({ maxClients: 100, freeFailures: 1 });
    for (let i = 0; i < 10_000; i++) limiter.failed(`10.0.${i >> 8}.${i & 255}`, 0);
    expect(limiter.size).toBe(100);
    expect(limiter.waitMs("10.0.39.15", 0)).toBe(1_000);
  });
});
