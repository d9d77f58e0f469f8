import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, servingOrigin, type Herdless } from "./attack-kit.ts";

/**
 * Web cache deception and route sidestepping through path spellings an origin server reads
 * differently from herdless (nginx and Spring decode `%2F`, Tomcat drops `;` parameters, IIS
 * reads `\` and drops trailing dots, Express and IIS ignore case): the route is decided on
 * every such reading (`routeFor`, `pathReadings`). The Worker's twin is
 * test/cloudflare/security-routes.test.ts.
 */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});

/**
 * The path as a lenient origin routes it: decoded, `;` parameters dropped, `\` as `/`, dots
 * resolved, each segment NFKC normalized and trimmed of whitespace and controls (Spring's
 * `trimTokens`, .NET's `Trim`), without case by upper-casing too (Java's `equalsIgnoreCase`).
 */
function originRoute(target: string): string {
  const decoded = decodeURIComponent(decodeURIComponent(target.split("?")[0]!)).replaceAll("\\", "/");
  const segments: string[] = [];
  for (const raw of decoded.split("/").slice(1)) {
    const segment = raw
      .split(";")[0]!
      .normalize("NFKC")
      .replace(/^[\s\p{Cc}]+|[\s\p{Cc}]+$/gu, "");
    if (segment === "..") segments.pop();
    else if (segment !== "." && segment !== "") segments.push(segment.replace(/\.+$/, ""));
  }
  return `/${segments.join("/")}`.toUpperCase().toLowerCase();
}

interface Seen {
  route: string;
  cookie: string | undefined;
}

/** An origin that routes leniently and answers `/account` with the cookie's owner, without Cache-Control. */
async function lenientOrigin(): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const url = await servingOrigin((req, res) => {
    const route = originRoute(req.url ?? "/");
    seen.push({ route, cookie: req.headers.cookie });
    const owner = route === "/account" ? (req.headers.cookie ?? "nobody") : "-";
    res.writeHead(200, { "content-type": "text/plain" }).end(`${route} of ${owner}`);
  }, cleanup);
  return { url, seen };
}

async function cacheIn(front: string, config: Parameters<typeof herdless>[1]): Promise<Herdless> {
  const cache = await herdless(front, config);
  cleanup.push(() => cache.close());
  return cache;
}

describe("web cache deception through path spellings (Node)", () => {
  it("a victim lured to /static/..%2faccount (and ..;/, %5c, %252f, a trailing dot) on a cacheAuthorized static route gets their page relayed, never stored for the attacker", async () => {
    const origin = await lenientOrigin();
    const cache = await cacheIn(origin.url, {
      routes: [{ match: "/static/*", cacheAuthorized: true, forceTtlMs: 86_400_000 }],
    });
    const lures = [
      "/static/..%2faccount",
      "/static/..;/account",
      "/static/x/..;/..;/account",
      "/static/..%5caccount",
      "/static/%252e%252e%252faccount",
      "/static/..%2fACCOUNT.",
    ];
    for (const lure of lures) {
      const victim = await get(cache.base, lure, { headers: { cookie: "session=victim" } });
      expect(victim.body, lure).toBe("/account of session=victim");
      expect(victim.headers["cache-status"], lure).toMatch(/fwd=bypass/);
      const attacker = await get(cache.base, lure);
      expect(attacker.body, lure).toBe("/account of nobody");
    }
    // The static route still caches what is under it, with credentials.
    await get(cache.base, "/static/app.css", { headers: { cookie: "session=victim" } });
    expect((await get(cache.base, "/static/app.css")).headers["cache-status"]).toMatch(/hit/);
    expect(origin.seen.filter((s) => s.route === "/account")).toHaveLength(lures.length * 2);
  });

  it("an /api/* bypass is not sidestepped by /API/, /api%2f, /api;x/ or /api./ on an origin that routes them to /api/: each reaches the origin, none is stored", async () => {
    const origin = await lenientOrigin();
    const cache = await cacheIn(origin.url, {
      defaults: { defaultTtlMs: 60_000 },
      routes: [{ match: "/api/*", bypass: true }],
    });
    const spellings = ["/API/me", "/api%2fme", "/Api%2Fme", "/api;x/me", "/api./me", "/x/..%2fapi/me"];
    for (const spelling of spellings) {
      for (let i = 0; i < 2; i++) {
        const answer = await get(cache.base, spelling);
        expect(answer.headers["cache-status"], spelling).toMatch(/fwd=bypass/);
      }
    }
    expect(origin.seen.filter((s) => s.route === "/api/me")).toHaveLength(spellings.length * 2);
    // Other pages are cached as before.
    await get(cache.base, "/Blog/Post");
    expect((await get(cache.base, "/Blog/Post")).headers["cache-status"]).toMatch(/hit/);
  });

  it("an /api/* bypass is not sidestepped by whitespace or controls around a segment, fullwidth letters or a dotless ı on an origin that trims, normalizes and upper-cases: each reaches the origin, none is stored", async () => {
    const origin = await lenientOrigin();
    const cache = await cacheIn(origin.url, {
      defaults: { defaultTtlMs: 60_000 },
      routes: [{ match: "/api/*", bypass: true }],
    });
    const spellings = [
      "/api%09/me",
      "/api%0a/me",
      "/api%0B/me",
      "/api%0c/me",
      "/api%0d/me",
      "/api%1f/me",
      "/%20api/me",
      "/%09api/me",
      "/%20/api/me",
      "/api%C2%A0/me",
      "/api%E3%80%80/me",
      "/%EF%BD%81pi/me",
      "/ap%C4%B1/me",
      "/api%2509/me",
    ];
    for (const spelling of spellings) {
      for (let i = 0; i < 2; i++) {
        const answer = await get(cache.base, spelling);
        expect(answer.headers["cache-status"], spelling).toMatch(/fwd=bypass/);
      }
    }
    expect(origin.seen.filter((s) => s.route === "/api/me")).toHaveLength(spellings.length * 2);
    // A page whose name only holds such characters inside it is cached as before.
    await get(cache.base, "/caf%C3%A9%09menu");
    expect((await get(cache.base, "/caf%C3%A9%09menu")).headers["cache-status"]).toMatch(/hit/);
  });

  it("an exact bypass route (/login) is not sidestepped by /login/ or /LOGIN", async () => {
    const origin = await lenientOrigin();
    const cache = await cacheIn(origin.url, {
      defaults: { defaultTtlMs: 60_000 },
      routes: [{ match: "/login", bypass: true }],
    });
    for (const spelling of ["/login/", "/LOGIN", "/login//"]) {
      await get(cache.base, spelling);
      expect((await get(cache.base, spelling)).headers["cache-status"], spelling).toMatch(/fwd=bypass/);
    }
    expect(origin.seen).toHaveLength(6);
  });
});

describe("web cache deception through the origin's path delimiters (Node)", () => {
  /**
   * An origin that ends the path where Rails (`.format`), OpenLiteSpeed (`%00`) and servers that
   * decode before splitting off the query or fragment (`%23`, `%3F`) do, routes as a PHP front
   * controller does (`/index.php/account` is `/account`) and ASP.NET does (`/(S(x))/account`),
   * and answers
   * `/account` with the cookie's owner, without Cache-Control.
   */
  async function delimitingOrigin(): Promise<{ url: string; seen: string[] }> {
    const seen: string[] = [];
    const url = await servingOrigin((req, res) => {
      const path = decodeURIComponent((req.url ?? "/").split("?")[0]!);
      const cut = path.split(/[\0#?\n\r]/)[0]!.replace(/\.[^/]*$/, "");
      const route = new URL(cut, "http://o.test").pathname
        .replace(/\/\([A-Z]\([^/()]*\)\)(?=\/|$)/g, "")
        .replace(/^.*?\.php(?=\/)/, "")
        .toLowerCase();
      seen.push(route);
      const owner = route === "/account" ? (req.headers.cookie ?? "nobody") : "-";
      res.writeHead(200, { "content-type": "text/plain" }).end(`${route} of ${owner}`);
    }, cleanup);
    return { url, seen };
  }

  it("an exact /account bypass beside a cacheAuthorized default is not sidestepped by /account.css, /account%00.css, /account%23.css, /account%3F.css, /index.php/account or /(S(x))/account: the victim's page is relayed, never stored for the attacker", async () => {
    const origin = await delimitingOrigin();
    const cache = await cacheIn(origin.url, {
      defaults: { cacheAuthorized: true, defaultTtlMs: 60_000 },
      routes: [{ match: "/account", bypass: true }],
    });
    const lures = [
      "/account.css",
      "/account.json",
      "/Account.css",
      "/account%2ecss",
      "/account%00.css",
      "/account%23.css",
      "/account%3f.css",
      "/account%0A.css",
      "/static/..%2faccount.css",
      "/account%23/..%2fstatic.css",
      "/index.php/account",
      "/index.php/account.css",
      "/(S(x))/account",
    ];
    for (const lure of lures) {
      const victim = await get(cache.base, lure, { headers: { cookie: "session=victim" } });
      expect(victim.body, lure).toBe("/account of session=victim");
      expect(victim.headers["cache-status"], lure).toMatch(/fwd=bypass/);
      const attacker = await get(cache.base, lure);
      expect(attacker.body, lure).toBe("/account of nobody");
    }
    expect(origin.seen.filter((route) => route === "/account")).toHaveLength(lures.length * 2);
    // Other pages, extensions included, are still cached with credentials.
    await get(cache.base, "/app.css", { headers: { cookie: "session=victim" } });
    expect((await get(cache.base, "/app.css")).headers["cache-status"]).toMatch(/hit/);
  });
});

describe("proxy path traversal out of origin.url's path prefix (Node)", () => {
  it("/..%2fadmin, /..;/admin, /%252e%252e/admin, /..%5cadmin are a 400 naming the path: the backend's /admin outside /app/ is never asked for, never stored", async () => {
    const origin = await lenientOrigin();
    const cache = await cacheIn(`${origin.url}/app/`, {});
    const climbs = [
      "/..%2fadmin",
      "/..;/admin",
      "/x/..;/..;/admin",
      "/%252e%252e/admin",
      "/..%5cadmin",
      "/a/..%2f..%2fadmin",
    ];
    for (const climb of climbs) {
      const attack = await get(cache.base, climb);
      expect(attack.status, climb).toBe(400);
      expect(attack.body, climb).toMatch(/climbs above the root/);
      expect(attack.headers["cache-status"], climb).toBe("herdless; detail=refused");
      // A POST (relayed, never stored) is refused the same way.
      expect((await get(cache.base, climb, { method: "POST", headers: { "content-length": "0" } })).status).toBe(400);
    }
    // Paths that stay inside, with the same spellings, are served.
    const victim = await get(cache.base, "/docs/..%2fpage");
    expect(victim.status).toBe(200);
    expect(origin.seen.map((s) => s.route)).toEqual(["/app/page"]);
  });
});
