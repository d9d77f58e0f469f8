/**
 * Browsers send a site's analytics cookies (and Cloudflare's own) on every request. A request
 * whose cookies are all such (`cache.ignoreCookies`) is cached as an anonymous one, through
 * the real Node server; any other cookie still makes it personal.
 */
import type { IncomingHttpHeaders } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, servingOrigin } from "./attack-kit.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const ANALYTICS = "_ga=GA1.2.123.456; _gid=GA1.2.789; _ga_ABC123=GS1.1.1; __cf_bm=bot-token; _hjSessionUser_9=x";

/** A shop that greets a signed-in visitor by name, privately, and serves everyone else one public page. */
async function shop() {
  const seen: IncomingHttpHeaders[] = [];
  const url = await servingOrigin((req, res) => {
    seen.push(req.headers);
    req.resume();
    const user = /(?:^|; )session=(\w+)/.exec(req.headers.cookie ?? "")?.[1];
    if (user) return void res.writeHead(200, { "cache-control": "private" }).end(`hello ${user}`);
    res.writeHead(200, { "cache-control": "max-age=60" }).end("hello visitor");
  }, cleanup);
  const proxy = await herdless(url);
  cleanup.push(() => proxy.close());
  return { base: proxy.base, seen };
}

describe("analytics cookies", () => {
  it("do not keep a page from the cache: one origin request, then hits", async () => {
    const { base, seen } = await shop();
    const first = await get(base, "/", { headers: { cookie: ANALYTICS } });
    expect(first.body).toBe("hello visitor");
    expect(first.headers["cache-status"]).toMatch(/fwd=uri-miss; fwd-status=200; ttl=60; stored/);
    // The fill is an anonymous one: the cookies stay with the browser.
    expect(seen[0]!.cookie).toBeUndefined();
    for (const cookie of [ANALYTICS, "_ga=GA1.2.999", ""]) {
      const again = await get(base, "/", cookie ? { headers: { cookie } } : {});
      expect(again.headers["cache-status"]).toMatch(/^herdless; hit/);
      expect(again.body).toBe("hello visitor");
    }
    expect(seen).toHaveLength(1);
  });

  it("attack: with a session cookie beside them, the request is the visitor's own and nothing of it is shared", async () => {
    const { base, seen } = await shop();
    const ann = await get(base, "/", { headers: { cookie: `${ANALYTICS}; session=ann` } });
    expect(ann.body).toBe("hello ann");
    expect(ann.headers["cache-status"]).toMatch(/fwd=bypass/);
    // Relayed with every cookie the browser sent.
    expect(seen[0]!.cookie).toBe(`${ANALYTICS}; session=ann`);
    // The next visitor, with analytics cookies only, gets the public page, never ann's.
    const next = await get(base, "/", { headers: { cookie: ANALYTICS } });
    expect(next.body).toBe("hello visitor");
    // And an attacker's analytics-only cookie cannot carry a session to the origin on a fill.
    const attacker = await get(base, "/other", { headers: { cookie: "_ga=1; session=mallory" } });
    expect(attacker.body).toBe("hello mallory");
    const victim = await get(base, "/other", { headers: { cookie: "_ga=2" } });
    expect(victim.body).toBe("hello visitor");
  });

  it("cache.ignoreCookies [] makes every cookie personal", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const url = await servingOrigin((req, res) => {
      seen.push(req.headers);
      req.resume();
      res.writeHead(200, { "cache-control": "max-age=60" }).end("page");
    }, cleanup);
    const proxy = await herdless(url, { cache: { ignoreCookies: [] } });
    cleanup.push(() => proxy.close());
    for (let i = 0; i < 2; i++)
      expect((await get(proxy.base, "/", { headers: { cookie: "_ga=1" } })).headers["cache-status"]).toMatch(
        /fwd=bypass/,
      );
    expect(seen.map((h) => h.cookie)).toEqual(["_ga=1", "_ga=1"]);
  });
});
