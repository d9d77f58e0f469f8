import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { handleAdmin, tokenMatches, statsSnapshot, type AdminContext, type AdminRequest } from "./admin.ts";
import { Metrics } from "./metrics.ts";
import { LocalPurgeRegistry } from "./purge.ts";

const TOKEN = "0123456789abcdef-token";

function setup(token: string | null = TOKEN) {
  const clock = new ManualClock(1_000_000);
  const purges = new LocalPurgeRegistry(clock, (url) => `GET ${url}`);
  const metrics = new Metrics(clock);
  const ctx: AdminContext = {
    token: token ?? undefined,
    purges,
    tokenHint: "--admin-token",
    stats: async () =>
      statsSnapshot(
        metrics,
        { breaker: "closed", inFlight: 0, queued: 0 },
        { runtime: "node", mode: "local", startedAt: 0, now: clock.now() },
      ),
  };
  return { ctx, purges, metrics };
}

function req(method: string, path: string, headers: Record<string, string> = {}, body = ""): AdminRequest {
  return { method, path, headers: new Headers(headers), text: async () => body };
}

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

  it("compares tokens exactly", async () => {
    expect(await tokenMatches(TOKEN, TOKEN)).toBe(true);
    expect(await tokenMatches(`${TOKEN}x`, TOKEN)).toBe(false);
    expect(await tokenMatches(TOKEN.slice(0, -1), TOKEN)).toBe(false);
    expect(await tokenMatches(null, TOKEN)).toBe(false);
  });
});
