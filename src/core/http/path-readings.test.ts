import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseConfig, routeFor } from "../config.ts";
import { climbsAboveRoot, pathReadings } from "./path-readings.ts";

const paths = (pathname: string) => pathReadings(pathname)?.map((r) => r.path);

describe("pathReadings: what an origin server may read a path as", () => {
  it("decodes %2F, %5C and double encoding, drops ;parameters, reads \\ as /, merges slashes, resolves the dots they make", () => {
    expect(paths("/static/..%2faccount")).toContain("/account");
    expect(paths("/static/%252e%252e%252faccount")).toContain("/account");
    expect(paths("/static/%c0%ae%c0%ae/account")).toContain("/account");
    expect(paths("/static/%u002e%u002e/account")).toContain("/account");
    // Fullwidth full stop and solidus, which NFKC and IIS's best-fit mapping make `.` and `/`.
    expect(paths("/static/%EF%BC%8E%EF%BC%8E%EF%BC%8Faccount")).toContain("/account");
    expect(paths("/static/..%ef%bc%bcaccount")).toContain("/account");
    expect(paths("/static/..%5caccount")).toContain("/account");
    expect(paths("/static/x/..;/..;/account")).toContain("/account");
    expect(paths("/private./x")).toContain("/private/x");
    expect(paths("/a//../b")).toContain("/b");
    expect(paths("/about/")).toContain("/about");
  });

  it("trims whitespace and controls around each segment, normalizes to NFKC and reads ı and İ as i", () => {
    for (const spelling of ["/api%09/x", "/api%0A/x", "/api%1f/x", "/%20api/x", "/%09api/x", "/api%C2%A0/x"])
      expect(paths(spelling), spelling).toContain("/api/x");
    expect(paths("/api%E3%80%80/x")).toContain("/api/x");
    expect(paths("/%u0009api/x")).toContain("/api/x");
    expect(paths("/%2509api/x")).toContain("/api/x");
    // A segment of nothing but whitespace is no segment.
    expect(paths("/%20/api/x")).toContain("/api/x");
    expect(paths("/%EF%BD%81pi/x")).toContain("/api/x");
    expect(paths("/ap%C4%B1/x")).toContain("/api/x");
    expect(paths("/AP%C4%B0/x")).toContain("/APi/x");
    expect(paths("/%C5%BFtatic/x")).toContain("/static/x");
    // The Kelvin sign.
    expect(paths("/%E2%84%AAey/x")).toContain("/Key/x");
    // What stays is spelled as the URL parser spells it; inside a segment nothing is trimmed.
    expect(paths("/caf%C3%A9%09/x")).toContain("/caf%C3%A9/x");
    expect(paths("/a%09b/x")).toEqual(["/a%09b/x"]);
    expect(paths("/caf%C3%A9/x")).toEqual(["/caf%C3%A9/x"]);
  });

  it("ends the path where a server may: at %00, %23, %3F, %0A or %0D, before the last segment's extension, after a PHP script, without ASP.NET's cookieless segments", () => {
    for (const spelling of ["/account%00.css", "/account%23.css", "/account%3f.css", "/account%0A.css", "/account%0d"])
      expect(paths(spelling), spelling).toContain("/account");
    expect(paths("/account.css")).toContain("/account");
    expect(paths("/account%2ecss")).toContain("/account");
    expect(paths("/static/..%2faccount.css")).toContain("/account");
    // Cut before the path is read, before the dots are resolved, and after; a `/` the cut
    // or a dot segment leaves at the end is dropped.
    expect(paths("/account%23/..%2fstatic")).toContain("/account");
    expect(paths("/account%20%0Ax")).toContain("/account");
    expect(paths("/account%5c/%2F%3f")).toContain("/account");
    expect(paths("/ACCOUNT%2f%2F%2e;")).toContain("/ACCOUNT");
    expect(paths("/static/%252e%252e%252faccount%2500")).toContain("/account");
    // A PHP front controller routes its path info.
    expect(paths("/index.php/account")).toContain("/account");
    expect(paths("/blog/index.PHP/account.json")).toContain("/account");
    expect(paths("/index.php%2faccount")).toContain("/account");
    expect(paths("/index.php")).toEqual(["/index.php", "/index", "/index"]);
    // ASP.NET's cookieless-session segments, wherever they stand.
    expect(paths("/(S(x))/account")).toContain("/account");
    expect(paths("/(A(x))/(F(y))/account.aspx")).toContain("/account");
    expect(paths("/x/(S(abc))")).toContain("/x");
    expect(paths("/(S(x))")).toContain("/");
    expect(paths("/(x)/account")).not.toContain("/account");
    // Only the last segment has an extension, and a leading dot is none.
    expect(paths("/v1.2/me")).not.toContain("/v1/me");
    expect(paths("/.env")).toEqual(["/.env"]);
  });

  it("a plain path has only its case-folded reading and its extension's; a long ambiguous one is left unread", () => {
    expect(pathReadings("/Blog/Post")).toEqual([{ path: "/Blog/Post", folded: true }]);
    expect(pathReadings("/Blog/Post.html")).toEqual([
      { path: "/Blog/Post.html", folded: true },
      { path: "/Blog/Post", folded: false },
      { path: "/Blog/Post", folded: true },
    ]);
    expect(pathReadings(`/x/${"a".repeat(3_000)}%2f`)).toBeUndefined();
    expect(pathReadings(`/x/${"a".repeat(3_000)}`)).toHaveLength(1);
    expect(paths(`/x/${"a".repeat(3_000)}/`)).toContain(`/x/${"a".repeat(3_000)}`);
  });
});

describe("climbsAboveRoot", () => {
  it("is true for a path an origin resolves above its root once decoded, false for one that stays inside", () => {
    for (const climb of ["/..%2fadmin", "/..;/admin", "/x/..;/..;/admin", "/%252e%252e/admin", "/..%5cadmin", "/.. /x"])
      expect(climbsAboveRoot(climb), climb).toBe(true);
    for (const inside of ["/a/..%2fb", "/app.js", "/a/b/", "/a;x/..;/b", "/%2e%2e.txt"])
      expect(climbsAboveRoot(inside), inside).toBe(false);
  });
});

describe("routeFor over every reading", () => {
  const config = parseConfig({
    origin: { url: "http://o.test" },
    routes: [
      { match: "/static/private/*", bypass: true },
      { match: "/static/*", cacheAuthorized: true, forceTtlMs: 1_000 },
      { match: "/api/*", bypass: true },
    ],
  });

  it("bypasses when any reading's route does, caches credentials only when every reading's route does", () => {
    const policy = (p: string) => {
      const { match, bypass, cacheAuthorized } = routeFor(config, p);
      return { match, bypass, cacheAuthorized };
    };
    expect(policy("/static/app.css")).toEqual({ match: "/static/*", bypass: false, cacheAuthorized: true });
    expect(policy("/static/..%2faccount")).toEqual({ match: "/static/*", bypass: false, cacheAuthorized: false });
    expect(policy("/API/me").bypass).toBe(true);
    expect(policy("/api%2fme").bypass).toBe(true);
    expect(policy("/static/PRIVATE/x").bypass).toBe(true);
    expect(policy("/api%09/me").bypass).toBe(true);
    expect(policy("/%EF%BD%81pi/me").bypass).toBe(true);
    expect(policy("/ap%C4%B1/me").bypass).toBe(true);
    expect(policy("/static/%20private/x").bypass).toBe(true);
    expect(policy(`/static/${"a".repeat(3_000)}%20`).bypass).toBe(true);
    expect(policy("/Blog/Post")).toEqual({ match: "*", bypass: false, cacheAuthorized: false });
    expect(policy("/api.json/me").bypass).toBe(false);
    expect(policy("/static/private.css/x").bypass).toBe(false);
    expect(policy("/static/private%00/x").bypass).toBe(true);
  });

  it("a config whose routes agree on bypass and cacheAuthorized reads nothing", () => {
    const ttls = parseConfig({ origin: { url: "http://o.test" }, routes: [{ match: "/static/*", forceTtlMs: 1_000 }] });
    expect(routeFor(ttls, "/static/..%2faccount").match).toBe("/static/*");
    expect(routeFor(ttls, "/static/..%2faccount").bypass).toBe(false);
  });
});

/**
 * A model origin that reads a path every way `pathReadings` names at once: decoded twice, cut
 * at NUL, `#`, `?` or a newline, ASP.NET's cookieless segments dropped, `\` as `/` and then
 * `;` parameters dropped, slashes merged, segments trimmed, trailing dots dropped, dots resolved, a PHP script
 * dropped, without case, a trailing `/` and the extension.
 */
function modelOriginRoute(pathname: string): string {
  let p = pathname;
  for (let i = 0; i < 2; i++) p = p.replace(/%[0-9a-f]{2}/gi, (e) => String.fromCharCode(parseInt(e.slice(1), 16)));
  p = p.split(/[\0#?\n]/)[0]!.replace(/\/\([A-Za-z]\([^/()]*\)\)(?=\/|$)/g, "");
  p = p
    .replace(/\\/g, "/")
    .split("/")
    .map((s) => s.split(";")[0]!)
    .join("/")
    .replace(/\/+/g, "/");
  const segments: string[] = [];
  for (const raw of p.split("/")) {
    const s = raw.trim();
    // A segment of whitespace alone is none (Spring's tokenizer drops empty tokens).
    if (s === "" && raw !== "") continue;
    // A segment of dots alone keeps them (`...`), as herdless reads IIS.
    const segment = /^\.+$/.test(s) ? s : s.replace(/\.+$/, "");
    if (segment === "..") segments.pop();
    else if (segment !== ".") segments.push(segment);
  }
  p = (segments.join("/") || "/").replace(/^.*?\.php(?=\/)/i, "").toLowerCase();
  if (p.length > 1 && p.endsWith("/")) p = p.slice(0, -1);
  return p.replace(/\.[^/]*$/, "");
}

describe("routeFor against a model origin (property)", () => {
  const config = parseConfig({
    origin: { url: "http://o.test" },
    defaults: { cacheAuthorized: true },
    routes: [{ match: "/account", bypass: true }],
  });
  const before = ["", "/static", "/index.php", "/(S(a))", "/x/..%2f", "/%2f", "//", "/%20"];
  const pieces = ["/", "..", ".", "%2f", "%2e", ";", "%3b", "%00", "%23", "%3f", "%0a", "%09", "%20", ".css"];
  const more = [...pieces, "%5c", "\\", "(S(a))", "%252f", "x", "account", "a.b"];

  it("no path the model origin reads as /account gets past an exact /account bypass", () => {
    const spelling = fc.tuple(
      fc.constantFrom(...before),
      fc.constantFrom("/account", "/ACCOUNT", "/Account"),
      fc.array(fc.constantFrom(...more), { maxLength: 5 }),
    );
    fc.assert(
      fc.property(spelling, ([head, name, tail]) => {
        const pathname = new URL(`http://o.test${head}${name}${tail.join("")}`).pathname;
        fc.pre(modelOriginRoute(pathname) === "/account");
        expect(routeFor(config, pathname).bypass, pathname).toBe(true);
      }),
      { numRuns: 3_000, seed: 20_261_203 },
    );
  });
});
