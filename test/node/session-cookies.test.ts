/**
 * Visitors with a session cookie (signed in, or given one by a framework on their first page)
 * send it with every request, for stylesheets and images too. A copy the origin marked
 * `public` answers them from the cache, through the real Node server; anything else of theirs
 * is still relayed alone, and nothing a session shapes is ever stored.
 */
import type { IncomingHttpHeaders } from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { get, herdless, raw, servingOrigin } from "./attack-kit.ts";

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

/**
 * Cookies sent as several Cookie fields (HTTP/2 crumbs passed on as such, RFC 9113 §8.2.3), or
 * joined with ", " by a proxy in front. Node's server joins repeated Cookie fields with "; ",
 * but they were passed on to the origin as separate fields, which Apache, workerd and others
 * join with ", " (`sessionid=alice, csrftoken=t0k` to a cookie parser); and one field joined
 * with ", " was read as one ignored `_ga`. The Worker twin is test/cloudflare/session-cookies.test.ts.
 */
describe("a session's cookies in several fields, or joined with ', '", () => {
  async function rawOrigin() {
    const fields: string[][] = [];
    const url = await servingOrigin((req, res) => {
      const cookies: string[] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        if (/^cookie$/i.test(req.rawHeaders[i]!)) cookies.push(req.rawHeaders[i + 1]!);
      fields.push(cookies);
      req.resume();
      const user = /(?:^|; )sessionid=([^;]+)/.exec(cookies.join("; "))?.[1] ?? "guest";
      res.writeHead(200, { "cache-control": "max-age=60" }).end(`hello ${user}`);
    }, cleanup);
    const proxy = await herdless(url);
    cleanup.push(() => proxy.close());
    return { base: proxy.base, fields };
  }
  const twoFields = (path: string, ...cookies: string[]) =>
    `GET ${path} HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n${cookies.map((c) => `cookie: ${c}\r\n`).join("")}\r\n`;

  it("two Cookie fields reach the origin as one, joined with '; '", async () => {
    const { base, fields } = await rawOrigin();
    const alice = await raw(base, twoFields("/account", "sessionid=alice", "csrftoken=t0k"));
    expect(alice.body).toBe("hello alice");
    expect(fields).toEqual([["sessionid=alice; csrftoken=t0k"]]);
  });

  it("attack: a signed-in visitor whose proxy joined her cookies with ', ' is never served the guest's stored page", async () => {
    const { base, fields } = await rawOrigin();
    expect((await get(base, "/home")).headers["cache-status"]).toMatch(/stored/);
    expect((await get(base, "/home")).headers["cache-status"]).toMatch(/^herdless; hit/);
    const alice = await get(base, "/home", { headers: { cookie: "_ga=GA1.2.3, sessionid=alice" } });
    expect(alice.headers["cache-status"]).toMatch(/fwd=bypass/);
    expect(fields).toEqual([[], ["_ga=GA1.2.3, sessionid=alice"]]);
    // Two fields, the session in the second: her own page too.
    const again = await raw(base, twoFields("/home", "_ga=GA1.2.3", "sessionid=alice"));
    expect(again.headers["cache-status"]).toMatch(/fwd=bypass/);
    expect(fields[2]).toEqual(["_ga=GA1.2.3; sessionid=alice"]);
  });
});
