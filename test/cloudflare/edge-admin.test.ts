import { describe, expect, it } from "vitest";
import { ADMIN_TOKEN, adminCall, dataCenters, EDGE, edgeEnv, type DataCenter } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const PROPAGATION = { purgePropagationMs: 20 };

/** One cached key in a data center: a miss, then a hit. */
async function cached(dc: DataCenter, path: string): Promise<void> {
  expect((await dc.get(path)).cacheStatus).toMatch(/fwd=uri-miss/);
  expect((await dc.get(path)).cacheStatus).toMatch(/^herdless; hit; /);
}

describe("the admin API's token", () => {
  it("wrong or missing token: 401 on purge, stats and the dashboard, and the purge has no effect", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN, ...PROPAGATION } }));
    await cached(dc!, "/guarded");
    for (const token of ["wrong-token-0123456789", null, `${ADMIN_TOKEN}x`, ADMIN_TOKEN.slice(0, -1)]) {
      const purge = await adminCall(dc!, "POST", "purge", { token, body: { all: true } });
      expect(purge.status).toBe(401);
      expect(purge.headers.get("www-authenticate")).toBe('Bearer realm="herdless"');
      expect((await adminCall(dc!, "GET", "stats", { token })).status).toBe(401);
    }
    const dashboard = await dc!.get("/__herdless/");
    expect(dashboard.status).toBe(401);
    expect(dashboard.body).toContain("herdless admin token");
    // Nothing was purged: still a hit, and the origin saw only the first request.
    expect((await dc!.get("/guarded")).cacheStatus).toMatch(/^herdless; hit; /);
    expect(await origin.count()).toBe(1);
    // The right token works, through the dashboard's cookie too.
    const login = await dc!.get("/__herdless/login", {
      method: "POST",
      body: new URLSearchParams({ token: ADMIN_TOKEN }),
    });
    expect(login.status).toBe(303);
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    expect((await dc!.get("/__herdless/", { headers: { cookie } })).status).toBe(200);
    expect((await adminCall(dc!, "POST", "purge", { body: { urls: [`${EDGE}/guarded`] } })).status).toBe(200);
    expect((await dc!.get("/guarded")).cacheStatus).toMatch(/fwd=uri-miss/);
    expect(await origin.count()).toBe(2);
  });

  it("the HERDLESS_ADMIN_TOKEN secret wins over admin.token; a secret under 16 characters answers 500 naming it", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const testEnv = {
      ...edgeEnv(origin.url, { admin: { token: "config-token-0123456789", ...PROPAGATION } }),
      HERDLESS_ADMIN_TOKEN: ADMIN_TOKEN,
    };
    const [dc] = dataCenters(1, testEnv);
    expect((await adminCall(dc!, "GET", "stats")).status).toBe(200);
    expect((await adminCall(dc!, "GET", "stats", { token: "config-token-0123456789" })).status).toBe(401);
    const [short] = dataCenters(1, { ...testEnv, HERDLESS_ADMIN_TOKEN: "short" });
    const answer = await adminCall(short!, "GET", "stats", { token: "short" });
    expect(answer.status).toBe(500);
    expect(answer.body).toMatch(/HERDLESS_ADMIN_TOKEN must be at least 16 characters/);
    // A secret no Authorization header can carry as written never matches: refused, named.
    for (const secret of ["pässwörd-pässwörd-1", " abcdefghijklmnopqrst ", "abcdefghijklmnop\n"]) {
      const [unsendable] = dataCenters(1, { ...testEnv, HERDLESS_ADMIN_TOKEN: secret });
      const refused = await adminCall(unsendable!, "GET", "stats");
      expect(refused.status, JSON.stringify(secret)).toBe(500);
      expect(refused.body).toMatch(/HERDLESS_ADMIN_TOKEN must be visible ASCII only/);
    }
    expect(await origin.count()).toBe(0);
  });

  it("HEAD on stats and metrics is their GET without a body; a method a route does not answer is 405 with Allow", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN, ...PROPAGATION } }));
    const authorization = `Bearer ${ADMIN_TOKEN}`;
    for (const path of ["stats", "metrics"]) {
      const head = await dc!.get(`/__herdless/${path}`, { method: "HEAD", headers: { authorization } });
      expect(head.status, path).toBe(200);
      expect(head.body, path).toBe("");
    }
    for (const [method, path, allow] of [
      ["PUT", "metrics", "GET, HEAD"],
      ["POST", "stats", "GET, HEAD"],
      ["GET", "purge", "POST"],
    ] as const) {
      const refused = await dc!.get(`/__herdless/${path}`, { method, headers: { authorization } });
      expect(refused.status, `${method} ${path}`).toBe(405);
      expect(refused.headers.get("allow")).toBe(allow);
    }
    expect(await origin.count()).toBe(0);
  });

  it("no token configured: the admin API is disabled, 404 saying how to set the secret; nothing reaches the origin", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    await cached(dc!, "/open");
    for (const [method, path] of [
      ["POST", "purge"],
      ["GET", "stats"],
      ["GET", ""],
    ] as const) {
      const answer = await adminCall(dc!, method, path, method === "POST" ? { body: { all: true } } : {});
      expect(answer.status).toBe(404);
      expect(answer.body).toBe(
        "herdless admin API is disabled: no admin token is configured (set the HERDLESS_ADMIN_TOKEN secret: npx wrangler secret put HERDLESS_ADMIN_TOKEN; under npm start, in .dev.vars or the environment)\n",
      );
    }
    expect((await dc!.get("/open")).cacheStatus).toMatch(/^herdless; hit; /);
    expect(await origin.count()).toBe(1);
  });
});

describe("the admin API's requests", () => {
  it("rejects a bad or oversized purge body with 400 and the reason; /__herdless redirects to the dashboard", async () => {
    const origin = await testOrigin();
    const [dc] = dataCenters(1, edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN, ...PROPAGATION } }));
    const unknown = await adminCall(dc!, "POST", "purge", { body: { url: "https://x.test/" } });
    expect(unknown.status).toBe(400);
    expect(JSON.parse(unknown.body)).toMatchObject({
      error: expect.stringMatching(/unknown purge field "url"/) as unknown,
    });
    const huge = await adminCall(dc!, "POST", "purge", {
      body: { tags: Array.from({ length: 10_000 }, (_, i) => `tag-${i}`) },
    });
    expect(huge.status).toBe(400);
    expect(JSON.parse(huge.body)).toEqual({ error: "request body is larger than 65536 bytes" });
    const bare = await dc!.get("/__herdless", { redirect: "manual" });
    expect(bare.status).toBe(308);
    expect(bare.headers.get("location")).toBe("/__herdless/");
    expect(await origin.count()).toBe(0);
  });
});

describe("the admin API under attack, in workerd", () => {
  const env = async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { admin: { token: ADMIN_TOKEN, ...PROPAGATION } }), undefined, {
      ownIsolate: true,
    });
    return { origin, dc: dc! };
  };
  const signIn = async (dc: DataCenter) => {
    const login = await dc.get("/__herdless/login", {
      method: "POST",
      body: new URLSearchParams({ token: ADMIN_TOKEN }),
    });
    expect(login.status).toBe(303);
    const setCookie = login.headers.get("set-cookie") ?? "";
    return { setCookie, cookie: setCookie.split(";")[0] ?? "" };
  };

  it("CSRF with the operator's cookie (text/plain; application/json, or cross-site JSON) purges nothing", async () => {
    const { origin, dc } = await env();
    await cached(dc, "/csrf");
    const { cookie } = await signIn(dc);
    const forged = await dc.get("/__herdless/purge", {
      method: "POST",
      headers: { cookie, "content-type": "text/plain; application/json", "x-herdless-request": "x" },
      body: '{"all":true}',
    });
    expect(forged.status).toBe(415);
    const crossSite = await dc.get("/__herdless/purge", {
      method: "POST",
      headers: { cookie, "content-type": "application/json", "sec-fetch-site": "cross-site" },
      body: '{"all":true}',
    });
    expect(crossSite.status).toBe(403);
    // The victim: still a hit, one origin request in all.
    expect((await dc.get("/csrf")).cacheStatus).toMatch(/^herdless; hit; /);
    expect(await origin.count()).toBe(1);
    const mine = await dc.get("/__herdless/purge", {
      method: "POST",
      headers: { cookie, "content-type": "application/json", "sec-fetch-site": "same-origin" },
      body: JSON.stringify({ urls: [`${EDGE}/csrf`] }),
    });
    expect(mine.status).toBe(200);
  });

  it("the session cookie is Secure over https, expires, holds no token; malformed cookies are 401; no framing", async () => {
    const { dc } = await env();
    const { setCookie, cookie } = await signIn(dc);
    expect(setCookie).not.toContain(ADMIN_TOKEN);
    expect(setCookie).toMatch(/; Max-Age=28800; HttpOnly; SameSite=Strict; Secure$/);
    const page = await dc.get("/__herdless/", { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(page.headers.get("x-frame-options")).toBe("DENY");
    // A browser that sends its cookies as two Cookie fields (workerd joins them with ", ") is signed in too.
    for (const fields of [
      [
        ["cookie", "_ga=GA1.2.3"],
        ["cookie", cookie],
      ],
      [
        ["cookie", cookie],
        ["cookie", "_ga=1"],
      ],
    ])
      expect((await dc.get("/__herdless/stats", { headers: fields as [string, string][] })).status).toBe(200);
    for (const bad of ["herdless_admin=%zz", `herdless_admin=${encodeURIComponent(ADMIN_TOKEN)}`, "herdless_admin"]) {
      expect((await dc.get("/__herdless/stats", { headers: { cookie: bad } })).status).toBe(401);
    }
  });

  it("token guessing from one address is slowed down; another address is not", async () => {
    const { dc } = await env();
    const guess = (token: string, ip = "198.51.100.9") =>
      dc.get("/__herdless/stats", { headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": ip } });
    for (let i = 0; i < 10; i++) expect((await guess(`wrong-guess-${i}-0123456789`)).status).toBe(401);
    const slowed = await guess("wrong-guess-10-0123456789");
    expect(slowed.status).toBe(429);
    expect(slowed.headers.get("retry-after")).toBe("1");
    expect((await guess(ADMIN_TOKEN)).status).toBe(429);
    expect((await guess(ADMIN_TOKEN, "192.0.2.10")).status).toBe(200);
  });

  it("token guessing from fresh IPv6 addresses of one /64 is slowed down as from one address", async () => {
    const { dc } = await env();
    const guess = (token: string, ip: string) =>
      dc.get("/__herdless/stats", { headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": ip } });
    // A /64 is one host's or home's (2^64 addresses): each guess from a new one used to be a free one.
    for (let i = 0; i < 10; i++)
      expect((await guess(`wrong-guess-${i}-0123456789`, `2001:db8:5:6::${(i + 1).toString(16)}`)).status).toBe(401);
    const slowed = await guess("wrong-guess-10-0123456789", "2001:db8:5:6:abcd::99");
    expect(slowed.status).toBe(429);
    expect((await guess(ADMIN_TOKEN, "2001:db8:5:7::1")).status).toBe(200);
  });
});
