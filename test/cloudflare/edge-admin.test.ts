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
        "herdless admin API is disabled: no admin token is configured (set the HERDLESS_ADMIN_TOKEN secret: npx wrangler secret put HERDLESS_ADMIN_TOKEN)\n",
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
