/**
 * The admin API of the Node server, attacked over real sockets: each test is the attacker's
 * request, then what the victim (the operator, or the cached site) sees.
 */
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

const TOKEN = "node-admin-attack-token-0123";
const logger = jsonLogger("silent");
let origin: FragileOrigin;
let proxy: RunningServer;

beforeAll(async () => {
  origin = await startFragileOrigin({ cacheControl: "max-age=300" });
  const config = parseConfig({ origin: { url: origin.url }, admin: { token: TOKEN, purgePropagationMs: 10 } });
  proxy = await startServer({ stack: localStack({ config, logger }), logger, port: 0 });
});

afterAll(async () => {
  await proxy?.close();
  await origin?.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function send(path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<Answer>((resolve, reject) => {
    const req = httpRequest(
      `${proxy.url}${path}`,
      { method: init.method ?? "GET", headers: init.headers, agent: false },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

async function signIn(headers: Record<string, string> = {}) {
  const login = await send("/__herdless/login", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
    body: `token=${TOKEN}`,
  });
  expect(login.status).toBe(303);
  const setCookie = String(login.headers["set-cookie"]);
  return { setCookie, cookie: setCookie.split(";")[0]! };
}

/** A page cached before the attack: the victim's view is whether it is still a hit. */
async function cachedPage(path: string): Promise<() => Promise<string>> {
  expect(String((await send(path)).headers["cache-status"])).toContain("fwd=uri-miss");
  return async () => String((await send(path)).headers["cache-status"]);
}

describe("Node admin API under attack", () => {
  it("CSRF: a cross-site form with the operator's cookie and `text/plain; application/json` purges nothing", async () => {
    const page = await cachedPage("/csrf-target");
    const { cookie } = await signIn();
    const forged = await send("/__herdless/purge", {
      method: "POST",
      headers: { cookie, "content-type": "text/plain; application/json", "sec-fetch-site": "cross-site" },
      body: '{"all":true}',
    });
    expect([403, 415]).toContain(forged.status);
    const json = await send("/__herdless/purge", {
      method: "POST",
      headers: { cookie, "content-type": "application/json", "sec-fetch-site": "same-site" },
      body: '{"all":true}',
    });
    expect(json.status).toBe(403);
    await new Promise((resolve) => setTimeout(resolve, 30)); // longer than purgePropagationMs
    expect(await page()).toMatch(/^herdless; hit/);
    // The operator's dashboard (same origin) still purges.
    const mine = await send("/__herdless/purge", {
      method: "POST",
      headers: { cookie, "content-type": "application/json", "x-herdless-request": "dashboard" },
      body: JSON.stringify({ urls: [`${proxy.url}/csrf-target`] }),
    });
    expect(mine.status).toBe(200);
    expect(await page()).toContain("fwd=uri-miss");
  });

  it("the session cookie holds no token, expires, is HttpOnly and Strict, and Secure behind an https proxy", async () => {
    const { setCookie, cookie } = await signIn();
    expect(setCookie).not.toContain(TOKEN);
    expect(setCookie).toMatch(
      /^herdless_admin=[\w.-]+; Path=\/__herdless\/; Max-Age=28800; HttpOnly; SameSite=Strict$/,
    );
    expect((await send("/__herdless/stats", { headers: { cookie } })).status).toBe(200);
    expect((await signIn({ "x-forwarded-proto": "https" })).setCookie).toMatch(/; Secure$/);
    // An attacker who learns an old cookie format (the raw token) gets nothing.
    expect((await send("/__herdless/stats", { headers: { cookie: `herdless_admin=${TOKEN}` } })).status).toBe(401);
  });

  it("malformed cookies are a 401, never a 500, and the server keeps serving", async () => {
    for (const cookie of ["herdless_admin=%zz", "herdless_admin=%E0%A4%A", "herdless_admin", "; ; herdless_admin=="]) {
      expect((await send("/__herdless/stats", { headers: { cookie } })).status).toBe(401);
      expect((await send("/__herdless/", { headers: { cookie } })).status).toBe(401);
    }
    expect((await send("/__herdless/stats", { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });

  it("the dashboard refuses to be framed", async () => {
    const { cookie } = await signIn();
    const dashboard = await send("/__herdless/", { headers: { cookie } });
    expect(dashboard.status).toBe(200);
    expect(dashboard.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
    expect(dashboard.headers["x-frame-options"]).toBe("DENY");
  });

  it("token guessing from one address is slowed down: 429 with Retry-After, even for the right token", async () => {
    const guess = (token: string) => send("/__herdless/stats", { headers: { authorization: `Bearer ${token}` } });
    let first429: Answer | undefined;
    for (let i = 0; i < 12 && !first429; i++) {
      const answer = await guess(`guess-number-${i}-0123456789`);
      if (answer.status === 429) first429 = answer;
      else expect(answer.status).toBe(401);
    }
    expect(first429?.headers["retry-after"]).toBe("1");
    expect((await guess(TOKEN)).status).toBe(429);
    // Once the wait is over, the operator's token is checked again.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await guess(TOKEN)).status).toBe(200);
  });
});
