/**
 * Visitors with a session cookie (signed in, or given one by a framework on their first page)
 * send it with every request, for stylesheets and images too. A copy the origin marked
 * `public` answers them from the cache, through the real Node server; anything else of theirs
 * is still relayed alone, and nothing a session shapes is ever stored.
 */
import type { IncomingHttpHeaders } from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { get, herdless, servingOrigin } from "./attack-kit.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/**
 * A site whose pages greet a session's user (with the page's `cache-control` all the same:
 * the mistake this guards against) and whose assets are public. `?v=` versions an answer.
 */
async function site(extra: Parameters<typeof herdless>[1] = {}) {
  const seen: IncomingHttpHeaders[] = [];
  let version = 1;
  const url = await servingOrigin((req, res) => {
    seen.push(req.headers);
    req.resume();
    const user = /(?:^|; )session=(\w+)/.exec(req.headers.cookie ?? "")?.[1] ?? "visitor";
    const path = req.url ?? "/";
    if (path.startsWith("/app.css"))
      return void res
        .writeHead(200, { "cache-control": "public, max-age=60, stale-while-revalidate=30" })
        .end(`css v${version} for ${user}`);
    if (path.startsWith("/varies"))
      return void res.writeHead(200, { "cache-control": "public, max-age=60", vary: "Cookie" }).end(`hello ${user}`);
    res.writeHead(200, { "cache-control": "max-age=60" }).end(`hello ${user}`);
  }, cleanup);
  const proxy = await herdless(url, extra);
  cleanup.push(() => proxy.close());
  return { ...proxy, seen, bump: () => version++ };
}

const session = (user: string) => ({ headers: { cookie: `session=${user}` } });

describe("session cookies and public copies", () => {
  it("a public copy answers visitors with a session: one origin request for all", async () => {
    const { base, seen } = await site();
    expect((await get(base, "/app.css")).body).toBe("css v1 for visitor");
    for (const user of ["ann", "bob"]) {
      const hit = await get(base, "/app.css", session(user));
      expect(hit.headers["cache-status"]).toMatch(/^herdless; hit/);
      expect(hit.body).toBe("css v1 for visitor");
      // A Range is cut from the public copy too.
      const part = await get(base, "/app.css", { headers: { ...session(user).headers, range: "bytes=0-2" } });
      expect([part.status, part.body]).toEqual([206, "css"]);
    }
    expect(seen).toHaveLength(1);
  });

  it("attack: a session's request stores nothing, not even of a public answer", async () => {
    const { base, seen } = await site();
    const mallory = await get(base, "/app.css", session("mallory"));
    expect(mallory.body).toBe("css v1 for mallory");
    expect(mallory.headers["cache-status"]).toMatch(/fwd=bypass/);
    expect(seen[0]!.cookie).toBe("session=mallory");
    // The victims, with a session of their own or none, get the page a cookie-less fill made.
    expect((await get(base, "/app.css", session("ann"))).body).toBe("css v1 for ann");
    const anonymous = await get(base, "/app.css");
    expect(anonymous.body).toBe("css v1 for visitor");
    expect(seen[2]!.cookie).toBeUndefined();
    expect((await get(base, "/app.css", session("bob"))).body).toBe("css v1 for visitor");
    expect(seen).toHaveLength(3);
  });

  it("attack: a page not marked public, or varying on Cookie, is never another visitor's", async () => {
    const { base } = await site();
    for (const path of ["/account", "/varies"]) {
      expect((await get(base, path)).body).toBe("hello visitor");
      const ann = await get(base, path, session("ann"));
      expect(ann.body).toBe("hello ann");
      expect(ann.headers["cache-status"]).toMatch(/fwd=bypass/);
    }
  });

  it("within stale-while-revalidate a session's request gets the copy and renews it without its cookie", async () => {
    const { base, seen, clock, bump } = await site();
    await get(base, "/app.css");
    bump();
    clock.advance(70_000);
    const stale = await get(base, "/app.css", session("ann"));
    expect(stale.body).toBe("css v1 for visitor");
    expect(stale.headers["cache-status"]).toMatch(/stale-while-revalidate/);
    await vi.waitFor(() => expect(seen).toHaveLength(2));
    expect(seen[1]!.cookie).toBeUndefined();
    await vi.waitFor(async () => expect((await get(base, "/app.css", session("bob"))).body).toBe("css v2 for visitor"));
  });

  it("past stale-while-revalidate a session's request is its own again: relayed, nothing stored", async () => {
    const { base, seen, clock, bump } = await site();
    await get(base, "/app.css");
    bump();
    clock.advance(100_000);
    const ann = await get(base, "/app.css", session("ann"));
    expect(ann.body).toBe("css v2 for ann");
    expect(ann.headers["cache-status"]).toMatch(/fwd=bypass/);
    expect(seen.map((h) => h.cookie)).toEqual([undefined, "session=ann"]);
    expect((await get(base, "/app.css")).headers["cache-status"]).toMatch(/fwd=stale/);
  });

  it("a request no-cache the route honours is relayed with its cookie, never a shared fill", async () => {
    const { base, seen } = await site({ defaults: { honorRequestNoCache: true } });
    await get(base, "/app.css");
    const ann = await get(base, "/app.css", { headers: { ...session("ann").headers, "cache-control": "no-cache" } });
    expect(ann.body).toBe("css v1 for ann");
    expect(ann.headers["cache-status"]).toMatch(/fwd=bypass/);
    expect(seen.map((h) => h.cookie)).toEqual([undefined, "session=ann"]);
  });
});
