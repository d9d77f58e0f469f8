/**
 * Analytics and Cloudflare cookies (`cache.ignoreCookies`) on the Worker: a request whose
 * cookies are all such is cached as an anonymous one, in memory, the Cache API and the key's
 * object alike; a session cookie beside them still makes it the visitor's own.
 */
import { describe, expect, it } from "vitest";
import { dataCenter, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const ANALYTICS = "_ga=GA1.2.123.456; _gid=GA1.2.789; __cf_bm=bot-token; cf_clearance=c";

describe("analytics cookies on the Worker", () => {
  it("keep no page from the cache; a session cookie beside them does", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const env = edgeEnv(origin.url);
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, env, undefined, { ownIsolate: true });
    const headers = { cookie: ANALYTICS };
    expect((await dc.get("/page", { headers })).cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200; ttl=\d+; stored/);
    expect((await dc.get("/page", { headers })).cacheStatus).toMatch(/^herdless; hit/);
    // Another data center: its Cache API is cold, the key's object has the page.
    const other = dataCenter(`dc-${crypto.randomUUID()}`, env, undefined, { ownIsolate: true });
    expect((await other.get("/page", { headers: { cookie: "_ga=GA1.2.999" } })).body).toBe("/page #1");
    expect(await origin.count()).toBe(1);
    const stats = await origin.stats();
    expect(stats.requests[0]!.headers.cookie).toBeUndefined();

    const signedIn = await dc.get("/page", { headers: { cookie: `${ANALYTICS}; session=ann` } });
    expect(signedIn.cacheStatus).toMatch(/fwd=bypass/);
    expect(await origin.count()).toBe(2);
  });
});
