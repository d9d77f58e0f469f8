/**
 * Session cookies on the Worker: a copy the origin marked `public` answers a request with a
 * session cookie from the isolate's memory or the data center's Cache API; nothing of such a
 * request is stored, and any other copy leaves it relayed alone.
 */
import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { dataCenter, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const session = { headers: { cookie: "session=ann" } };

describe("session cookies on the Worker", () => {
  it("a public copy answers them; nothing of theirs is stored", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "public, max-age=60" } });
    const env = edgeEnv(origin.url);
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, env, undefined, { ownIsolate: true });
    // Attack first: a session's request for a page nobody stored is relayed, and stores nothing.
    const first = await dc.get("/styles.css", session);
    expect(first.cacheStatus).toMatch(/fwd=bypass/);
    expect((await origin.stats()).requests[0]!.headers.cookie).toBe("session=ann");
    const filled = await dc.get("/styles.css");
    expect(filled.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200; ttl=\d+; stored/);
    // Written to the data center's Cache API behind the answer.
    await filled.settled;
    expect((await origin.stats()).requests[1]!.headers.cookie).toBeUndefined();
    for (let i = 0; i < 2; i++) {
      const hit = await dc.get("/styles.css", session);
      expect(hit.cacheStatus).toMatch(/^herdless; hit/);
      expect(hit.body).toBe("/styles.css #2");
    }
    // Another isolate of the data center: its memory is cold, the Cache API has the copy.
    const sibling = dataCenter(dc.name, env, undefined, { isolate: `other-${crypto.randomUUID()}` });
    expect((await sibling.get("/styles.css", session)).body).toBe("/styles.css #2");
    expect(await origin.count()).toBe(2);
  });

  it("attack: a copy not marked public is never served to them", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, edgeEnv(origin.url), undefined, { ownIsolate: true });
    expect((await dc.get("/account")).body).toBe("/account #1");
    const ann = await dc.get("/account", session);
    expect(ann.cacheStatus).toMatch(/fwd=bypass/);
    expect(ann.body).toBe("/account #2");
  });

  it("a session's request that is relayed holds up no anonymous request of its isolate", async () => {
    const origin = await testOrigin({ mode: "hold", headers: { "cache-control": "max-age=60" } });
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, edgeEnv(origin.url), undefined, { ownIsolate: true });
    const signedIn = dc.get("/held-page", session);
    await origin.waitFor({ held: 1 });
    const anonymous = dc.get("/held-page");
    // Its own fill reaches the origin at once: it never waits out the other's lookup (1 s).
    await origin.waitFor({ held: 2 }, 500);
    await origin.set({ mode: "up" });
    await origin.release();
    expect((await signedIn).cacheStatus).toMatch(/fwd=bypass/);
    expect((await anonymous).cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200; ttl=\d+; stored/);
  });
});

/**
 * A browser, proxy or library that sends its cookies as several Cookie fields (HTTP/2 cookie
 * crumbs passed on as such, RFC 9113 §8.2.3): workerd's Headers joins them with ", ", which
 * was read as one `_ga` cookie (ignored), so the signed-in visitor counted as a guest. The
 * Node twin is test/node/session-cookies.test.ts.
 */
describe("a session's cookies sent as two Cookie fields (Worker)", () => {
  const crumbs = (...values: string[]): RequestInit => ({ headers: values.map((v) => ["cookie", v]) });

  it("a signed-in visitor gets their own page, never the guest's stored one, from memory or the Cache API", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const env = edgeEnv(origin.url);
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, env, undefined, { ownIsolate: true });
    const guest = await dc.get("/home");
    expect(guest.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200; ttl=\d+; stored/);
    await guest.settled;
    expect((await dc.get("/home")).cacheStatus).toMatch(/^herdless; hit/);
    const alice = await dc.get("/home", crumbs("_ga=GA1.2.3", "sessionid=alice"));
    expect(alice.cacheStatus).toMatch(/fwd=bypass/);
    expect(alice.body).toBe("/home #2");
    // Another isolate of the data center: its memory is cold, the Cache API has the guest's copy.
    const sibling = dataCenter(dc.name, env, undefined, { isolate: `other-${crypto.randomUUID()}` });
    const again = await sibling.get("/home", crumbs("_ga=GA1.2.3", "sessionid=alice"));
    expect(again.cacheStatus).toMatch(/fwd=bypass/);
    expect(again.body).toBe("/home #3");
    // The origin saw her cookies as one field joined with "; ", as a browser sends them.
    const seen = (await origin.stats()).requests.map((r) => r.headers.cookie);
    expect(seen).toEqual([undefined, "_ga=GA1.2.3; sessionid=alice", "_ga=GA1.2.3; sessionid=alice"]);
  });

  it("on a cold page her request is relayed with her cookies and stores nothing for the next guest", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, edgeEnv(origin.url), undefined, { ownIsolate: true });
    const alice = await dc.get("/cold", crumbs("_ga=GA1.2.3", "sessionid=alice"));
    expect(alice.cacheStatus).toMatch(/fwd=bypass/);
    await alice.settled;
    const guest = await dc.get("/cold");
    expect(guest.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200; ttl=\d+; stored/);
    expect(guest.body).toBe("/cold #2");
    const seen = (await origin.stats()).requests.map((r) => r.headers.cookie);
    expect(seen).toEqual(["_ga=GA1.2.3; sessionid=alice", undefined]);
  });

  it("a relayed request's cookies reach the origin as one field: `sessionid` is not read as `alice, csrftoken=t0k`", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "private" } });
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, edgeEnv(origin.url), undefined, { ownIsolate: true });
    await dc.get("/account", crumbs("sessionid=alice", "csrftoken=t0k"));
    // A value with a comma that starts no other cookie is left as it is.
    await dc.get("/account", crumbs("note=a, b", "sessionid=alice"));
    const seen = (await origin.stats()).requests.map((r) => r.headers.cookie);
    expect(seen).toEqual(["sessionid=alice; csrftoken=t0k", "note=a, b; sessionid=alice"]);
  });

  it("on a route that caches cookies and varies on them, two fields select the variant their one field would", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60", vary: "Cookie" } });
    const env = edgeEnv(origin.url, { routes: [{ match: "/prefs/*", cacheAuthorized: true }] });
    await useInCoordinators(env, ["/prefs/page"], systemClock);
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, env, undefined, { ownIsolate: true });
    const first = await dc.get("/prefs/page", crumbs("theme=dark", "lang=fr"));
    expect(first.cacheStatus).toMatch(/stored/);
    await first.settled;
    expect((await dc.get("/prefs/page", crumbs("theme=dark", "lang=fr"))).body).toBe("/prefs/page #1");
    expect((await dc.get("/prefs/page", crumbs("theme=dark; lang=fr"))).body).toBe("/prefs/page #1");
    const other = await dc.get("/prefs/page", crumbs("theme=dark", "lang=de"));
    expect(other.body).toBe("/prefs/page #2");
    expect((await origin.stats()).requests.map((r) => r.headers.cookie)).toEqual([
      "theme=dark; lang=fr",
      "theme=dark; lang=de",
    ]);
  });
});
