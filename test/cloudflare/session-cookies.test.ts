/**
 * Session cookies on the Worker: a copy the origin marked `public` answers a request with a
 * session cookie from the isolate's memory or the data center's Cache API; nothing of such a
 * request is stored, and any other copy leaves it relayed alone.
 */
import { describe, expect, it } from "vitest";
import { dataCenter, edgeEnv } from "./edge-harness.ts";
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
