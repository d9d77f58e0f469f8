import { request as httpRequest, type IncomingHttpHeaders, type RequestListener } from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";
import { servingOrigin } from "./attack-kit.ts";

/**
 * What herdless stores, attacked through the Node server (its socket hit path included):
 * each test is the attacker's request, then the victim's.
 */

const logger = jsonLogger("silent");
const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** `handler` serving on 127.0.0.1 as the origin, closed after the test; its base URL. */
const serving = (handler: RequestListener) => servingOrigin(handler, cleanup);

/** What the scripted origin does next; every request is counted. */
interface Script {
  /** Extra headers on a 304 answering If-None-Match: "v1". */
  notModified: Record<string, string>;
  /** Header lines written raw (Node's writer refuses malformed ones). */
  rawHeaderLines: string;
  /** When set, every request gets a new 200 with this Cache-Control, validators or not. */
  cacheControl?: string;
  requests: number;
}

async function scriptedOrigin(): Promise<{ url: string; script: Script }> {
  const script: Script = { notModified: {}, rawHeaderLines: "", requests: 0 };
  const origin = await serving((req, res) => {
    script.requests++;
    if (req.headers["if-none-match"] === '"v1"' && script.cacheControl === undefined) {
      res.writeHead(304, { etag: '"v1"', "cache-control": "max-age=10", ...script.notModified }).end();
      return;
    }
    const lang = req.headers["x-lang"];
    const body = `page for ${req.url}${lang === undefined ? "" : ` in ${String(lang)}`}`;
    req.socket.end(
      `HTTP/1.1 200 OK\r\ncache-control: ${script.cacheControl ?? "max-age=10"}\r\netag: "v1"\r\ncontent-length: ${body.length}\r\n` +
        `${script.rawHeaderLines}connection: close\r\n\r\n${body}`,
    );
  });
  return { url: origin, script };
}

/** A herdless server in front of `originUrl`, with `origin` settings beside its URL; its URL. */
async function herdless(originUrl: string, clock: ManualClock, origin: Record<string, number> = {}): Promise<string> {
  const stack = localStack({ config: parseConfig({ origin: { url: originUrl, ...origin } }), logger, clock });
  const running = await startServer({ stack, logger, port: 0, fastHits: true });
  cleanup.push(() => running.close());
  return running.url;
}

function get(base: string, path: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return getWith(base, path, {});
}

function getWith(
  base: string,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { agent: false, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

describe("security: nothing one client should not see is stored (Node)", () => {
  it("RFC 9111 §4.3.4: a Set-Cookie on a 304 reaches the client that asked, never the next visitor", async () => {
    const { url, script } = await scriptedOrigin();
    const clock = new ManualClock(Date.now());
    const proxy = await herdless(url, clock);
    expect((await get(proxy, "/account")).status).toBe(200);

    clock.advance(11_000); // stale: the next request revalidates with If-None-Match
    script.notModified = { "set-cookie": "session=attacker-triggered" };
    const attacker = await get(proxy, "/account");
    expect(attacker.headers["set-cookie"]).toEqual(["session=attacker-triggered"]);
    script.notModified = {};

    const victim = await get(proxy, "/account");
    expect(victim.status).toBe(200);
    expect(victim.body).toBe("page for /account");
    expect(victim.headers["set-cookie"]).toBeUndefined();
    const hit = await get(proxy, "/account"); // the socket hit path too
    expect(hit.headers["cache-status"]).toMatch(/hit/);
    expect(hit.headers["set-cookie"]).toBeUndefined();
  });

  it("RFC 9111 §3, §4: once the origin answers private, the older shared copy is never served again, stale or not", async () => {
    const origin = await scriptedOrigin();
    const clock = new ManualClock(Date.now());
    const base = await herdless(origin.url, clock);
    origin.script.cacheControl = "max-age=10, stale-while-revalidate=600";
    await get(base, "/account");
    clock.advance(11_000);
    // The page became personal (the user signed in): the background revalidation gets it.
    origin.script.cacheControl = "private, max-age=10";
    expect((await get(base, "/account")).headers["cache-status"]).toContain("stale-while-revalidate");
    await vi.waitFor(() => expect(origin.script.requests).toBe(2));
    const victim = await get(base, "/account");
    expect(victim.headers["cache-status"]).not.toMatch(/hit|stale/);
    expect(origin.script.requests).toBe(3);
  });

  it("RFC 9111 §4.1, §4.3.4: a 304 that varies on a header the copy was not chosen by never makes it every variant's page", async () => {
    const { url, script } = await scriptedOrigin();
    const clock = new ManualClock(Date.now());
    const proxy = await herdless(url, clock);
    expect((await get(proxy, "/news")).body).toBe("page for /news"); // stored without Vary
    // The origin now serves a page per language; the stored copy's validator still matches English.
    clock.advance(11_000);
    script.rawHeaderLines = "vary: x-lang\r\n";
    script.notModified = { vary: "x-lang" };
    const attacker = await getWith(proxy, "/news", { "x-lang": "en" });
    // The 304 vouches for the copy for English only: that client gets it, nobody after it.
    expect(attacker.headers["cache-status"]).toMatch(/fwd=stale; fwd-status=304; detail=uncacheable/);
    expect(attacker.body).toBe("page for /news");
    const victim = await getWith(proxy, "/news", { "x-lang": "fr" });
    expect(victim.headers["cache-status"]).toMatch(/fwd=uri-miss; fwd-status=200/);
    expect(victim.body).toBe("page for /news in fr");
    // The French page is selected by language from then on, on the socket hit path too.
    expect((await getWith(proxy, "/news", { "x-lang": "fr" })).headers["cache-status"]).toMatch(/hit/);
    expect((await getWith(proxy, "/news", { "x-lang": "en" })).body).toBe("page for /news in en");
    expect(script.requests).toBe(4);
  });

  it.each([
    ["max-age=60, private="],
    ['max-age=60, private=""'],
    ['max-age=60, private=" , "'],
    ['max-age=60, private="x-user'],
    ['max-age=60, private="x-user" junk'],
    ['max-age=60, private="x user"'],
    ['max-age=60, no-cache=""'],
  ])(
    "RFC 9111 §5.2.2.4, §5.2.2.7: `%s` names no valid field list, so it covers the whole response: never shared",
    async (cc) => {
      const { url, script } = await scriptedOrigin();
      const proxy = await herdless(url, new ManualClock(Date.now()));
      script.cacheControl = cc;
      script.rawHeaderLines = "x-user: ann\r\n";
      const owner = await get(proxy, "/account");
      expect(owner.headers["x-user"]).toBe("ann");
      const victim = await get(proxy, "/account");
      // What the origin meant to withhold is unknown: the page is ann's (or must be revalidated).
      expect(victim.headers["cache-status"]).not.toMatch(/hit/);
      expect(script.requests).toBe(2);
    },
  );

  it("CPDoS, header oversize: an attacker's 10 KB header, refused by the origin with a 400 it marks max-age, never makes the page a 400 for the victim; an ordinary request's 400 is still stored", async () => {
    // An origin whose web server refuses a field over 8 KiB (nginx, Apache) and whose app or
    // CDN rules put max-age on every answer.
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const oversized = Object.values(req.headers).some((v) => String(v).length > 8 * 1024);
      const bad = req.url === "/broken" || oversized;
      res.writeHead(bad ? 400 : 200, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(bad ? "Request Header Or Cookie Too Large" : "the page");
    });
    const base = await herdless(origin, new ManualClock(Date.now()));
    const attack = await getWith(base, "/home", { "x-filler": "a".repeat(10_000) });
    expect(attack.status).toBe(400);
    const victim = await get(base, "/home");
    expect(victim.status).toBe(200);
    expect(victim.body).toBe("the page");
    expect((await get(base, "/home")).headers["cache-status"]).toMatch(/hit/);
    // An ordinary request's 400 with explicit freshness is the URL's answer: stored (RFC 9111 §3).
    await get(base, "/broken");
    expect((await get(base, "/broken")).headers["cache-status"]).toMatch(/hit/);
    expect(requests).toBe(3);
  });

  it("CPDoS, content metadata on a GET: a Content-Type or Content-Encoding without a body never reaches the origin, so its 400 marked max-age is never the victim's page", async () => {
    // A Rails-like origin: it parses the request body by its Content-Type on every method
    // (Rack 2.2+ raises "bad content body" on an empty multipart one) and decodes a coded
    // body, answering 400 when it cannot; nginx in front puts max-age on every answer.
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const type = req.headers["content-type"] ?? "";
      const bad = type.startsWith("multipart/form-data") || req.headers["content-encoding"] !== undefined;
      res.writeHead(bad ? 400 : 200, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(bad ? "400 Bad Request: bad content body" : `the page ${req.url}`);
    });
    const base = await herdless(origin, new ManualClock(Date.now()));
    const attacks: Record<string, string>[] = [
      { "content-type": "multipart/form-data; boundary=x" },
      { "content-encoding": "gzip", "content-type": "application/json" },
    ];
    for (const [i, headers] of attacks.entries()) {
      const attack = await getWith(base, `/home${i}`, headers);
      expect(attack.status).toBe(200);
      const victim = await get(base, `/home${i}`);
      expect([victim.status, victim.body]).toEqual([200, `the page /home${i}`]);
      expect(victim.headers["cache-status"]).toMatch(/hit/);
    }
    expect(requests).toBe(2);
  });

  it("CPDoS, proxy-chain headers on a GET: Max-Forwards, Early-Data and an HTTP2-Settings without its upgrade never reach the origin, so its 400 or 425 marked max-age is never the victim's page", async () => {
    // An origin that refuses them, behind an nginx that puts max-age on every answer: a GET with
    // Max-Forwards (meaningful on TRACE and OPTIONS only), a request that came in TLS early
    // data (RFC 8470's 425 Too Early), h2c settings without their upgrade.
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const status = req.headers["early-data"]
        ? 425
        : req.headers["max-forwards"] || req.headers["http2-settings"]
          ? 400
          : 200;
      res.writeHead(status, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(status === 200 ? `the page ${req.url}` : `refused: ${status}`);
    });
    const base = await herdless(origin, new ManualClock(Date.now()));
    const attacks: Record<string, string>[] = [
      { "max-forwards": "0" },
      { "early-data": "1" },
      { "http2-settings": "AAMAAABkAARAAAAAAAIAAAAA" },
    ];
    for (const [i, headers] of attacks.entries()) {
      expect((await getWith(base, `/home${i}`, headers)).status).toBe(200);
      const victim = await get(base, `/home${i}`);
      expect([victim.status, victim.body]).toEqual([200, `the page /home${i}`]);
      expect(victim.headers["cache-status"]).toMatch(/hit/);
    }
    expect(requests).toBe(3);
  });

  it("CPDoS on a cold key: the app's 500 to a User-Agent outside ASCII and a gateway's 502 to 6 KB of headers, marked max-age, are never the victim's page", async () => {
    // An application that crashes on a value it cannot decode, behind a gateway whose upstream
    // chokes on big headers; nginx in front puts max-age on every answer.
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const crash = /[^\x20-\x7e]/.test(req.headers["user-agent"] ?? "");
      const status = crash ? 500 : (req.headers["x-filler"]?.length ?? 0) > 5_000 ? 502 : 200;
      res.writeHead(status, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(status === 200 ? `the page ${req.url}` : `error ${status}`);
    });
    const base = await herdless(origin, new ManualClock(Date.now()));
    const attacks: [Record<string, string>, number][] = [
      [{ "user-agent": "caf\u00e9" }, 500],
      [{ "x-filler": "a".repeat(6_000) }, 502],
    ];
    for (const [i, [headers, status]] of attacks.entries()) {
      expect((await getWith(base, `/cold${i}`, headers)).status).toBe(status);
      const victim = await get(base, `/cold${i}`);
      expect([victim.status, victim.body]).toEqual([200, `the page /cold${i}`]);
    }
    expect(requests).toBe(4);
  });

  it("CPDoS on a cold key through an ordinary header's value: the app's 500 to `Accept-Language: xx`, a WAF's 400 to a 3 KB Referer or to `User-Agent: x`, marked max-age, are stored for the attacker's request alone; a browser gets the page; a 500 the origin gives everyone is stored once a second request got it", async () => {
    // Every answer carries max-age (a global middleware); nothing is stored for these URLs yet.
    let requests = 0;
    let down = false;
    const origin = await serving((req, res) => {
      requests++;
      const { referer, "user-agent": agent, "accept-language": language } = req.headers;
      const waf = (referer?.length ?? 0) > 3_000 || agent === "x";
      const status = down || language === "xx" || req.url === "/suite" ? 500 : waf ? 400 : 200;
      res.writeHead(status, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(status === 200 ? `the page ${req.url}` : `error ${status}`);
    });
    const base = await herdless(origin, new ManualClock(Date.now()));
    const browser = (agent: string) => ({
      "user-agent": `Mozilla/5.0 (X11; Linux x86_64) ${agent}`,
      accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
      "accept-language": "en-US,en;q=0.9",
    });
    const attacks: [Record<string, string>, number][] = [
      [{ "accept-language": "xx" }, 500],
      [{ referer: `https://example.com/${"a".repeat(3_000)}` }, 400],
      [{ "user-agent": "x" }, 400],
    ];
    for (const [i, [attack, status]] of attacks.entries()) {
      const attacker = { ...browser("Firefox/133.0"), ...attack };
      expect((await getWith(base, `/cold${i}`, attacker)).status).toBe(status);
      // The same request again is answered from the cache, as RFC 9111 §3 stores it.
      const again = await getWith(base, `/cold${i}`, attacker);
      expect([again.status, again.headers["cache-status"]]).toEqual([status, expect.stringMatching(/hit/)]);
      const victim = await getWith(base, `/cold${i}`, browser("Chrome/131.0"));
      expect([victim.status, victim.body]).toEqual([200, `the page /cold${i}`]);
    }
    expect(requests).toBe(6);
    // The conformance suite's status-500-fresh: its second request differs in Req-Num alone, and is a hit.
    const suite = (n: number) => ({ ...browser("node"), "test-id": "status-500-fresh", "req-num": `${n}` });
    expect((await getWith(base, "/suite", suite(1))).status).toBe(500);
    const second = await getWith(base, "/suite", suite(2));
    expect([second.status, second.headers["cache-status"]]).toEqual([500, expect.stringMatching(/hit/)]);
    expect(requests).toBe(7);
    // A real failure: the origin answers 500 to everyone. Two different requests got it: it is the URL's.
    down = true;
    expect((await getWith(base, "/down", browser("Chrome/131.0"))).status).toBe(500);
    expect((await getWith(base, "/down", browser("Safari/605.1.15"))).status).toBe(500);
    const third = await getWith(base, "/down", browser("Edg/131.0"));
    expect([third.status, third.body, third.headers["cache-status"]]).toEqual([
      500,
      "error 500",
      expect.stringMatching(/hit/),
    ]);
    expect(requests).toBe(9);
  });

  it("CPDoS on a cold key, confirmed by the attacker: the app's 500 to a header no browser sends, to a value outside ASCII, and a gateway's 502 to 6 KB of headers, marked max-age, asked twice with two User-Agents, are never the victim's page", async () => {
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const { "x-debug": debug, "user-agent": agent, "x-filler": filler } = req.headers;
      const status =
        debug !== undefined || /[^\x20-\x7e]/.test(agent ?? "") ? 500 : (filler?.length ?? 0) > 5_000 ? 502 : 200;
      res.writeHead(status, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(status === 200 ? `the page ${req.url}` : `error ${status}`);
    });
    const base = await herdless(origin, new ManualClock(Date.now()));
    const attacks: [(n: number) => Record<string, string>, number][] = [
      [(n) => ({ "user-agent": `curl/8.${n}`, "x-debug": `${n}` }), 500],
      [(n) => ({ "user-agent": `caf\u00e9/${n}` }), 500],
      [(n) => ({ "user-agent": `curl/8.${n}`, "x-filler": "a".repeat(6_000) }), 502],
    ];
    for (const [i, [attack, status]] of attacks.entries()) {
      // Two requests of the attacker's, told apart by their User-Agent: two requests "got" the error.
      expect((await getWith(base, `/cold${i}`, attack(1))).status).toBe(status);
      expect((await getWith(base, `/cold${i}`, attack(2))).status).toBe(status);
      const victim = await getWith(base, `/cold${i}`, { "user-agent": "Mozilla/5.0 Chrome/131.0" });
      expect([victim.status, victim.body]).toEqual([200, `the page /cold${i}`]);
    }
    expect(requests).toBe(9);
  });

  it("CPDoS on a cold key with origin.errorTtlMs: the app's 500 to an attacker's `Accept-Language: xx`, kept by herdless's own negative caching, is the attacker's alone; a 500 the origin gives everyone is kept once a second request got it", async () => {
    let requests = 0;
    let down = false;
    const origin = await serving((req, res) => {
      requests++;
      const status = down || req.headers["accept-language"] === "xx" ? 500 : 200;
      res.writeHead(status, {
        "content-type": "text/plain",
        ...(status === 200 ? { "cache-control": "max-age=60" } : {}),
      });
      res.end(status === 200 ? `the page ${req.url}` : `error ${status}`);
    });
    const base = await herdless(origin, new ManualClock(Date.now()), { errorTtlMs: 30_000 });
    const browser = (agent: string, language = "en-US,en;q=0.9") => ({
      "user-agent": `Mozilla/5.0 ${agent}`,
      "accept-language": language,
    });
    expect((await getWith(base, "/cold", browser("Firefox/133.0", "xx"))).status).toBe(500);
    const again = await getWith(base, "/cold", browser("Firefox/133.0", "xx"));
    expect([again.status, again.headers["cache-status"]]).toEqual([500, expect.stringMatching(/hit/)]);
    const victim = await getWith(base, "/cold", browser("Chrome/131.0"));
    expect([victim.status, victim.body]).toEqual([200, "the page /cold"]);
    expect(requests).toBe(2);
    down = true;
    expect((await getWith(base, "/down", browser("Chrome/131.0"))).status).toBe(500);
    expect((await getWith(base, "/down", browser("Safari/605.1.15"))).status).toBe(500);
    const third = await getWith(base, "/down", browser("Edg/131.0"));
    expect([third.status, third.headers["cache-status"]]).toEqual([500, expect.stringMatching(/hit/)]);
    expect(requests).toBe(4);
  });

  it("CPDoS, header count: an attacker's 120 one-byte headers, refused by the origin with a 400 it marks max-age, never make the page a 400 for the victim", async () => {
    // Apache refuses more than 100 request fields (LimitRequestFields) with a 400.
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const bad = req.rawHeaders.length / 2 > 100;
      res.writeHead(bad ? 400 : 200, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(bad ? "Bad Request: Request header field count exceeds limit" : "the page");
    });
    const base = await herdless(origin, new ManualClock(Date.now()));
    const many = Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`x-${i}`, "1"]));
    expect((await getWith(base, "/home", many)).status).toBe(400);
    const victim = await get(base, "/home");
    expect([victim.status, victim.body]).toEqual([200, "the page"]);
    expect((await get(base, "/home")).headers["cache-status"]).toMatch(/hit/);
    expect(requests).toBe(2);
  });

  it("CPDoS, non-ASCII header: an attacker's `X-A: café`, refused by the origin with a 400 it marks max-age, never makes the page a 400 for the victim", async () => {
    // An ASP.NET Core origin: Kestrel refuses a request whose header value is not ASCII (400),
    // and the proxy in front puts max-age on every answer.
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const bad = req.rawHeaders.some((field) => /[^\t\x20-\x7e]/.test(field));
      res.writeHead(bad ? 400 : 200, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(bad ? "Bad Request: invalid non-ASCII or control character in header" : "the page");
    });
    const base = await herdless(origin, new ManualClock(Date.now()));
    const attack = await getWith(base, "/home", { "x-a": "caf\u00e9" });
    expect(attack.status).toBe(400);
    const victim = await get(base, "/home");
    expect([victim.status, victim.body]).toEqual([200, "the page"]);
    expect((await get(base, "/home")).headers["cache-status"]).toMatch(/hit/);
    expect(requests).toBe(2);
  });

  it.each([
    ["a bot rule on the User-Agent", { "user-agent": "sqlmap/1.7" }],
    ["an XSS rule on the Referer", { referer: "https://x.test/<script>" }],
  ])(
    "CPDoS, a WAF's 403 to %s (ordinary headers, values of the attacker's), marked max-age, is never stored: on a cold key or over the stored page",
    async (_, headers) => {
      let requests = 0;
      const origin = await serving((req, res) => {
        requests++;
        const ua = req.headers["user-agent"] ?? "";
        const blocked = /sqlmap/.test(ua) || /<script/.test(req.headers.referer ?? "");
        res.writeHead(blocked ? 403 : 200, { "cache-control": "max-age=60", "content-type": "text/plain" });
        res.end(blocked ? "Blocked by WAF" : `the page ${req.url}`);
      });
      const clock = new ManualClock(Date.now());
      const base = await herdless(origin, clock);
      // A cold key: the attacker asks first.
      expect((await getWith(base, "/cold", headers)).status).toBe(403);
      expect(await get(base, "/cold")).toMatchObject({ status: 200, body: "the page /cold" });
      // A stored page: the attacker asks as it expires.
      clock.advance(61_000);
      expect((await getWith(base, "/cold", headers)).status).toBe(403);
      const victim = await get(base, "/cold");
      expect([victim.status, victim.body]).toEqual([200, "the page /cold"]);
      expect(requests).toBe(4);
    },
  );

  it("CPDoS, rate limit: RFC 6585 §4: a 429 the attacker tripped, marked max-age, is never stored: the victim gets the page", async () => {
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const limited = req.headers["user-agent"] === "flooder";
      res.writeHead(limited ? 429 : 200, { "cache-control": "max-age=60", "retry-after": "60" });
      res.end(limited ? "slow down" : "the page");
    });
    const clock = new ManualClock(Date.now());
    const base = await herdless(origin, clock);
    expect((await getWith(base, "/home", { "user-agent": "flooder" })).status).toBe(429);
    const victim = await get(base, "/home");
    expect([victim.status, victim.body]).toEqual([200, "the page"]);
    // Once the page is stale, the attacker's 429 is its own and the stored page stays.
    clock.advance(61_000);
    expect((await getWith(base, "/home", { "user-agent": "flooder" })).status).toBe(429);
    const later = await get(base, "/home");
    expect([later.status, later.body]).toEqual([200, "the page"]);
    expect(requests).toBe(4);
  });

  it("CPDoS, Accept: an attacker's Accept the origin cannot answer (406 marked max-age) never makes the page a 406 for the victim, whatever Vary names", async () => {
    // A Rails controller whose respond_to knows html only (ActionController::UnknownFormat is
    // a 406), behind nginx putting max-age on every answer and, with gzip_vary, a Vary that
    // names the coding but not Accept.
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const accept = req.headers.accept ?? "*/*";
      const html = /text\/html|\*\/\*/.test(accept);
      res.writeHead(html ? 200 : 406, {
        "cache-control": "max-age=60",
        vary: "Accept-Encoding",
        "content-type": "text/html",
      });
      res.end(html ? "the page" : "");
    });
    const clock = new ManualClock(Date.now());
    const base = await herdless(origin, clock);
    expect((await getWith(base, "/products", { accept: "application/json" })).status).toBe(406);
    const victim = await getWith(base, "/products", { accept: "text/html" });
    expect([victim.status, victim.body]).toEqual([200, "the page"]);
    expect((await get(base, "/products")).headers["cache-status"]).toMatch(/hit/);
    expect(requests).toBe(2);
    // Once the page is stale, the attacker's request revalidates it: the 406 is the attacker's
    // alone, and the stored page stays the victim's.
    clock.advance(61_000);
    expect((await getWith(base, "/products", { accept: "application/json" })).status).toBe(406);
    const later = await get(base, "/products");
    expect([later.status, later.body]).toEqual([200, "the page"]);
    expect(requests).toBe(4);
  });

  it("CPDoS, a header the application chokes on: the gateway's 503 and the app's 400 to an attacker's X-Debug or X-Api-Version, marked max-age, never replace the stored page; negative caching never keeps such a 503; an ordinary request's 503 is still stored", async () => {
    // An origin whose every answer carries max-age (a CDN rule, `add_header … always`), whose
    // application crashes on an `X-Debug` header (its gateway answers 503) and rejects an
    // `X-Api-Version` it does not know with a 400.
    let requests = 0;
    let errorsMarked = true;
    const origin = await serving((req, res) => {
      requests++;
      const status =
        req.url === "/down" || req.headers["x-debug"] !== undefined ? 503 : req.headers["x-api-version"] ? 400 : 200;
      const marked = status !== 503 || errorsMarked;
      res.writeHead(status, { ...(marked ? { "cache-control": "max-age=60" } : {}), "content-type": "text/plain" });
      res.end(status === 200 ? `the page ${req.url}` : `error ${status}`);
    });
    const clock = new ManualClock(Date.now());
    const base = await herdless(origin, clock);
    for (const path of ["/home", "/about"]) expect((await get(base, path)).status).toBe(200);
    // At expiry the attacker's request is the one that asks the origin again.
    clock.advance(61_000);
    expect((await getWith(base, "/home", { "x-debug": "1" })).status).toBe(503);
    expect((await getWith(base, "/about", { "x-api-version": "9" })).status).toBe(400);
    for (const path of ["/home", "/about"]) {
      const victim = await get(base, path);
      expect([victim.status, victim.body]).toEqual([200, `the page ${path}`]);
    }
    // An ordinary request's 503 with explicit freshness is the origin's word on the URL: stored (RFC 9111 §3).
    await get(base, "/down");
    expect((await get(base, "/down")).headers["cache-status"]).toMatch(/hit/);
    expect(requests).toBe(7);

    // herdless's own negative caching (origin.errorTtlMs) keeps a 503 without freshness for
    // everyone, but never one answering a client's own input.
    errorsMarked = false;
    const negative = await herdless(origin, clock, { errorTtlMs: 30_000 });
    expect((await getWith(negative, "/cold", { "x-debug": "1" })).status).toBe(503);
    const victim = await get(negative, "/cold");
    expect([victim.status, victim.body]).toEqual([200, "the page /cold"]);
  });

  it("CPDoS, an ordinary header's value: the app's 500 to an Accept-Language it crashes on and a WAF's 400 to a Referer, marked max-age, never replace the stored page, nor do they through the refresh a stale hit starts with the attacker's headers", async () => {
    // Every answer carries max-age (a CDN rule); the application crashes on one language and
    // its WAF refuses one Referer: header names every browser sends, with the attacker's values.
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const status = req.headers["accept-language"] === "xx" ? 500 : req.headers.referer === "http://x/'" ? 400 : 200;
      const swr = req.url === "/news" ? ", stale-while-revalidate=600" : "";
      res.writeHead(status, { "cache-control": `max-age=60${swr}`, "content-type": "text/plain" });
      res.end(status === 200 ? `the page ${req.url}` : `error ${status}`);
    });
    const clock = new ManualClock(Date.now());
    const base = await herdless(origin, clock);
    for (const path of ["/home", "/about", "/news"]) expect((await get(base, path)).status).toBe(200);
    // At expiry the attacker's request is the one that asks the origin again.
    clock.advance(61_000);
    expect((await getWith(base, "/home", { "accept-language": "xx" })).status).toBe(500);
    expect((await getWith(base, "/about", { referer: "http://x/'" })).status).toBe(400);
    // Within stale-while-revalidate the attacker gets the stale page; the refresh carries its header.
    expect((await getWith(base, "/news", { "accept-language": "xx" })).status).toBe(200);
    await vi.waitFor(() => expect(requests).toBe(6));
    for (const path of ["/home", "/about", "/news"]) {
      const victim = await get(base, path);
      expect([victim.status, victim.body]).toEqual([200, `the page ${path}`]);
    }
  });

  it("CPDoS, any error to the attacker's own header: the framework's 404 to an unknown X-Api-Version, a 401 to a wrong X-Api-Key, a WAF's 403 to X-Custom, all marked max-age, never replace the stored page; origin.notFoundTtlMs never keeps such a 404 on a cold key", async () => {
    // An origin whose every answer carries max-age (a CDN rule, `add_header … always`).
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const h = req.headers;
      const status = h["x-api-version"] ? 404 : h["x-api-key"] ? 401 : h["x-custom"] ? 403 : 200;
      res.writeHead(status, { "cache-control": "max-age=60", "content-type": "text/plain" });
      res.end(status === 200 ? `the page ${req.url}` : `error ${status}`);
    });
    const clock = new ManualClock(Date.now());
    const base = await herdless(origin, clock);
    const attacks: [string, Record<string, string>, number][] = [
      ["/home", { "x-api-version": "9" }, 404],
      ["/about", { "x-api-key": "wrong" }, 401],
      ["/shop", { "x-custom": "<script>" }, 403],
    ];
    for (const [path] of attacks) expect((await get(base, path)).status).toBe(200);
    // At expiry the attacker's request is the one that asks the origin again.
    clock.advance(61_000);
    for (const [path, headers, status] of attacks) expect((await getWith(base, path, headers)).status).toBe(status);
    for (const [path] of attacks) {
      const victim = await get(base, path);
      expect([victim.status, victim.body], path).toEqual([200, `the page ${path}`]);
      expect(victim.headers["cache-status"], path).toMatch(/fwd=stale; fwd-status=200; ttl=60; stored/);
    }
    expect(requests).toBe(9);

    // herdless's own negative caching of 404s keeps one without freshness for everyone, but
    // never one answering a client's own input.
    const bare = await serving((req, res) => {
      const status = req.headers["x-api-version"] ? 404 : 200;
      res.writeHead(status, { "content-type": "text/plain" }).end(status === 200 ? "the page" : "no such version");
    });
    const negative = await herdless(bare, clock, { notFoundTtlMs: 30_000 });
    expect((await getWith(negative, "/cold", { "x-api-version": "9" })).status).toBe(404);
    const victim = await get(negative, "/cold");
    expect([victim.status, victim.body]).toEqual([200, "the page"]);
  });

  it("origin.notFoundTtlMs keeps only a 404 that says nothing of its lifetime: one marked no-cache, max-age=0, with an Age past its max-age or Expires at its Date is asked again, never a hit (RFC 9111 §4.2.1, §5.2.2.4)", async () => {
    const lives: Record<string, Record<string, string>> = {
      "/no-cache": { "cache-control": "no-cache" },
      "/spent": { "cache-control": "max-age=0, must-revalidate" },
      "/old": { "cache-control": "max-age=5", age: "100" },
      "/expired": { expires: new Date(0).toUTCString() },
      "/silent": {},
    };
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      res.writeHead(404, { ...lives[req.url ?? ""], "content-type": "text/plain" }).end(`gone #${requests}`);
    });
    const clock = new ManualClock(Date.now());
    const base = await herdless(origin, clock, { notFoundTtlMs: 60_000 });
    for (const path of Object.keys(lives)) expect((await get(base, path)).status).toBe(404);
    clock.advance(1_000);
    for (const path of Object.keys(lives).filter((p) => p !== "/silent")) {
      const again = await get(base, path);
      expect(again.headers["cache-status"], path).toMatch(/fwd=/);
    }
    // The 404 that named no lifetime is the one notFoundTtlMs keeps.
    expect((await get(base, "/silent")).headers["cache-status"]).toMatch(/^herdless; hit; ttl=59$/);
    expect(requests).toBe(9);
  });

  it("RFC 9110 §7.6.1: a Vary or Cache-Control: private the origin names in Connection still governs the storage: the German page is never the French visitor's, the owner's private page never the next visitor's", async () => {
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      if (req.url === "/account") {
        res.writeHead(200, { "cache-control": "private", connection: "cache-control", "content-type": "text/plain" });
        res.end(`account of ${String(req.headers["x-user"])}`);
        return;
      }
      res.writeHead(200, { "cache-control": "max-age=60", vary: "X-Lang", connection: "Vary" });
      res.end(`page in ${String(req.headers["x-lang"])}`);
    });
    const clock = new ManualClock(Date.now());
    // A route TTL for pages without freshness of their own: the private page's Cache-Control is all that keeps it out.
    const config = parseConfig({ origin: { url: origin }, defaults: { defaultTtlMs: 60_000 } });
    const running = await startServer({
      stack: localStack({ config, logger, clock }),
      logger,
      port: 0,
      fastHits: true,
    });
    cleanup.push(() => running.close());

    expect((await getWith(running.url, "/home", { "x-lang": "de" })).body).toBe("page in de");
    const victim = await getWith(running.url, "/home", { "x-lang": "fr" });
    expect(victim.body).toBe("page in fr");
    expect((await getWith(running.url, "/account", { "x-user": "owner" })).body).toBe("account of owner");
    const next = await getWith(running.url, "/account", { "x-user": "visitor" });
    expect(next.body).toBe("account of visitor");
    expect(requests).toBe(4);
  });

  it("RFC 9111 §4.3.4: a 304 whose validator names another representation never relabels the stored copy: the visitors get the new page, under its own ETag or Last-Modified", async () => {
    // An origin that changed the page within the second of its Last-Modified and answers
    // If-Modified-Since alone (If-None-Match unread), with the new page's validators.
    let version = 1;
    const asked: string[] = [];
    const origin = await serving((req, res) => {
      const lastModified =
        req.url === "/etag" ? "Tue, 01 Dec 2026 10:00:00 GMT" : `Tue, 01 Dec 2026 10:00:0${version} GMT`;
      const validators = req.url === "/etag" ? { etag: `"v${version}"` } : {};
      const headers = { "cache-control": "max-age=10", "last-modified": lastModified, ...validators };
      asked.push(`${req.url} ${req.headers["if-modified-since"] === undefined ? "200" : "304"}`);
      if (req.headers["if-modified-since"] !== undefined) res.writeHead(304, headers).end();
      else res.writeHead(200, headers).end(`${req.url} version ${version}`);
    });
    const clock = new ManualClock(Date.now());
    const base = await herdless(origin, clock);
    for (const path of ["/etag", "/lm"]) expect((await get(base, path)).body).toBe(`${path} version 1`);
    version = 2;
    clock.advance(11_000);
    for (const path of ["/etag", "/lm"]) {
      for (const visitor of [await get(base, path), await get(base, path)]) {
        expect(visitor.body, path).toBe(`${path} version 2`);
        if (path === "/etag") expect(visitor.headers.etag).toBe('"v2"');
        else expect(visitor.headers["last-modified"]).toBe("Tue, 01 Dec 2026 10:00:02 GMT");
      }
    }
    // The 304 that vouched for another page was followed by one request for the page itself.
    expect(asked).toEqual(["/etag 200", "/lm 200", "/etag 304", "/etag 200", "/lm 304", "/lm 200"]);
  });

  it("CPDoS through a variant no one asked for yet: an error without Vary to the attacker's header never takes the place of the stored variants, fresh or not", async () => {
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      if (req.headers["x-api-version"] !== undefined) {
        res.writeHead(404, { "cache-control": "max-age=300" }).end("unknown version");
        return;
      }
      res.writeHead(200, { "cache-control": "max-age=60", vary: "X-Lang" });
      res.end(`page in ${String(req.headers["x-lang"])}`);
    });
    const base = await herdless(origin, new ManualClock(Date.now()));
    for (const lang of ["de", "fr"]) expect((await getWith(base, "/home", { "x-lang": lang })).status).toBe(200);
    // A language nobody asked for: this variant has no copy, the URL has two.
    const attack = await getWith(base, "/home", { "x-lang": "zz", "x-api-version": "9" });
    expect(attack.status).toBe(404);
    for (const lang of ["de", "fr"]) {
      const victim = await getWith(base, "/home", { "x-lang": lang });
      expect([victim.status, victim.body]).toEqual([200, `page in ${lang}`]);
      expect(victim.headers["cache-status"]).toMatch(/hit/);
    }
    expect(requests).toBe(3);
  });

  it("Authentication-Info acts on the client that asked: never stored, never replayed to the next visitor", async () => {
    const { url, script } = await scriptedOrigin();
    const proxy = await herdless(url, new ManualClock(Date.now()));
    const personal = [["authentication-info", 'nextnonce="ann-nonce", rspauth="ann"']] as const;
    for (const [name, value] of personal) {
      script.rawHeaderLines = `${name}: ${value}\r\n`;
      const path = `/with-${name}`;
      const attacker = await get(proxy, path);
      expect(attacker.headers[name], name).toBe(value);
      script.rawHeaderLines = "";
      const victim = await get(proxy, path);
      expect(victim.headers[name], name).toBeUndefined();
      expect(victim.headers["cache-status"], name).toMatch(/fwd=uri-miss; fwd-status=200; ttl=10; stored/);
      expect((await get(proxy, path)).headers["cache-status"], name).toMatch(/hit/);
    }
    // Named by a qualified private, the field is withheld from the copy, which is shared; the
    // requester whose fill the origin answered gets its own.
    script.cacheControl = 'max-age=10, private="Authentication-Info"';
    script.rawHeaderLines = 'authentication-info: nextnonce="ann-2"\r\n';
    expect((await get(proxy, "/named")).headers["authentication-info"]).toBe('nextnonce="ann-2"');
    const victim = await get(proxy, "/named");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.headers["authentication-info"]).toBeUndefined();
    // Proxy-Authentication-Info answers the next hop's proxy authentication, like Proxy-Authenticate.
    script.rawHeaderLines = 'proxy-authentication-info: nextnonce="p"\r\n';
    expect((await get(proxy, "/proxy-auth")).headers["proxy-authentication-info"]).toBeUndefined();
  });

  it("RFC 9111 §3.5: a signed-in request's private answer (a 304 or a 200 with Set-Cookie and no-store) never evicts the copy every visitor gets, nor the stale copy that hides the next outage", async () => {
    let requests = 0;
    let down = false;
    const origin = await serving((req, res) => {
      requests++;
      if (down) return void res.writeHead(503, { "content-type": "text/plain" }).end("origin down");
      const user = req.headers.authorization;
      if (user === undefined)
        return void res
          .writeHead(200, { etag: '"v1"', "cache-control": "max-age=10, stale-if-error=600" })
          .end("the public page");
      // The signed-in view: a 304 to the copy's validator, marked private, or the user's own page.
      if (req.headers["if-none-match"] === '"v1"' && user === "Bearer ann")
        return void res.writeHead(304, { etag: '"v1"', "cache-control": "private, max-age=10" }).end();
      res.writeHead(200, { "cache-control": "no-store", "set-cookie": "session=bob" }).end("bob's page");
    });
    const clock = new ManualClock(Date.now());
    const proxy = await herdless(origin, clock);
    expect((await get(proxy, "/home")).body).toBe("the public page");
    // The attacker signs in as often as they like: each request goes to the origin (§3.5).
    expect((await getWith(proxy, "/home", { authorization: "Bearer ann" })).headers["cache-control"]).toBe(
      "private, max-age=10",
    );
    const bob = await getWith(proxy, "/home", { authorization: "Bearer bob" });
    expect(bob.body).toBe("bob's page");
    expect(bob.headers["set-cookie"]).toEqual(["session=bob"]);
    expect(requests).toBe(3);

    const victim = await get(proxy, "/home");
    expect(victim.body).toBe("the public page");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.headers["set-cookie"]).toBeUndefined();
    expect(requests).toBe(3);
    // The origin fails once the copy expired: the copy still hides it.
    clock.advance(11_000);
    down = true;
    const later = await get(proxy, "/home");
    expect(later.status).toBe(200);
    expect(later.body).toBe("the public page");
    expect(later.headers["cache-status"]).toMatch(/stale-if-error/);
  });

  it("RFC 9110 §14.4: a 200 labelled with a Content-Range (a part of the page, sent as the whole) is never stored for the next visitor", async () => {
    let requests = 0;
    const origin = await serving((_req, res) => {
      requests++;
      // A sloppy origin (or a layer before it) answers the first fill with the page's first bytes.
      if (requests === 1)
        return void res.writeHead(200, { "cache-control": "max-age=60", "content-range": "bytes 0-3/12" }).end("the ");
      res.writeHead(200, { "cache-control": "max-age=60" }).end("the page now");
    });
    const proxy = await herdless(origin, new ManualClock(Date.now()));
    const first = await get(proxy, "/file");
    expect([first.body, first.headers["cache-status"]]).toEqual(["the ", expect.stringMatching(/uncacheable/)]);
    const victim = await get(proxy, "/file");
    expect(victim.body).toBe("the page now");
    expect((await get(proxy, "/file")).headers["cache-status"]).toMatch(/hit/);
    expect(requests).toBe(2);
  });

  it("CPDoS through Authorization: the 302 to the login page, 401, 403 or 503 an attacker's wrong token gets, marked public with a lifetime, is never the page of the next visitor, even on a key with nothing stored", async () => {
    let requests = 0;
    const origin = await serving((req, res) => {
      requests++;
      const token = req.headers.authorization;
      // A gateway that marks every answer public (a CDN rule), whatever its status.
      const status = token === undefined ? 200 : Number(token.slice("Bearer ".length));
      res.writeHead(status, { "cache-control": "public, max-age=60", "www-authenticate": "Bearer" });
      res.end(status === 200 ? "the page" : `refused ${status}`);
    });
    const proxy = await herdless(origin, new ManualClock(Date.now()));
    for (const status of [302, 401, 403, 503]) {
      const path = `/api-${status}`;
      const attacker = await getWith(proxy, path, { authorization: `Bearer ${status}` });
      expect(attacker.status).toBe(status);
      const victim = await get(proxy, path);
      expect([victim.status, victim.body]).toEqual([200, "the page"]);
      expect((await get(proxy, path)).headers["cache-status"]).toMatch(/hit/);
    }
    expect(requests).toBe(8);
  });

  it.each([
    ["defaultTtlMs", "must-revalidate"],
    ["forceTtlMs", "max-age=0, must-revalidate"],
  ])(
    "RFC 9111 §3.5: a signed-in user's page marked only must-revalidate is never every visitor's for the route's %s or a heuristic lifetime",
    async (ttl, cacheControl) => {
      let requests = 0;
      const origin = await serving((req, res) => {
        requests++;
        // Last changed a year ago: 10% of that is a heuristic lifetime of a day.
        res.writeHead(200, { "cache-control": cacheControl, "last-modified": "Mon, 01 Jan 2024 00:00:00 GMT" });
        res.end(`page of ${req.headers.authorization ?? "anonymous"}`);
      });
      const config = parseConfig({ origin: { url: origin }, defaults: { [ttl]: 600_000 } });
      const running = await startServer({
        stack: localStack({ config, logger, clock: new ManualClock(Date.now()) }),
        logger,
        port: 0,
        fastHits: true,
      });
      cleanup.push(() => running.close());
      const attacker = await getWith(running.url, "/me", { authorization: "Bearer ann" });
      expect(attacker.body).toBe("page of Bearer ann");
      const victim = await get(running.url, "/me");
      expect(victim.body).toBe("page of anonymous");
      expect(victim.headers["cache-status"]).toMatch(/fwd=(uri-miss|stale); fwd-status=200/);
      // The visitor's own page is the one kept for the route's lifetime.
      const next = await get(running.url, "/me");
      expect([next.body, next.headers["cache-status"]]).toEqual(["page of anonymous", expect.stringMatching(/hit/)]);
      expect(requests).toBe(2);
    },
  );

  it.each([
    ["read whole", 0],
    ["streamed", 200_000],
  ])(
    "RFC 9111 §3.5: a signed-in user's page, shareable only after revalidation (max-age=0, must-revalidate), never goes to the visitors (anonymous or signed in as another) collapsed onto that user's fill (body %s)",
    async (_how, padding) => {
      const held: (() => void)[] = [];
      let requests = 0;
      const origin = await serving((req, res) => {
        requests++;
        const page = `page of ${req.headers.authorization ?? "anonymous"}`.padEnd(padding, ".");
        const answer = () =>
          res.writeHead(200, { "cache-control": "max-age=0, must-revalidate", etag: `"${requests}"` }).end(page);
        if (requests === 1) held.push(answer);
        else answer();
      });
      const proxy = await herdless(origin, new ManualClock(Date.now()));
      const ann = getWith(proxy, "/me", { authorization: "Bearer ann" });
      await vi.waitFor(() => expect(held).toHaveLength(1));
      const victims = [get(proxy, "/me"), getWith(proxy, "/me", { authorization: "Bearer bob" })];
      // Real time for ordering only: the victims reach ann's fetch while it is held.
      await new Promise((resolve) => setTimeout(resolve, 100));
      held.splice(0).forEach((answer) => answer());
      expect((await ann).body.startsWith("page of Bearer ann")).toBe(true);
      const [anonymous, bob] = await Promise.all(victims);
      expect(anonymous!.body.startsWith("page of anonymous")).toBe(true);
      expect(bob!.body.startsWith("page of Bearer bob")).toBe(true);
      expect(requests).toBe(3);
    },
  );

  it.each([
    ["read whole", 0],
    ["streamed", 200_000],
  ])(
    "RFC 9111 §4.4: a fill the origin answered with the old page while a POST to the URL succeeded is never stored after the invalidation (body %s): the victim gets the new page",
    async (_how, padding) => {
      let version = 1;
      let gets = 0;
      const held: (() => void)[] = [];
      const origin = await serving((req, res) => {
        if (req.method === "POST") {
          version = 2;
          return void res.writeHead(200, { "content-type": "text/plain" }).end("saved");
        }
        gets++;
        // The page as it is when the request arrives; the first one is slow to go out.
        const page = `version ${version}`.padEnd(padding, ".");
        const answer = () => res.writeHead(200, { "cache-control": "max-age=60" }).end(page);
        if (gets === 1) held.push(answer);
        else answer();
      });
      const clock = new ManualClock(Date.now());
      const proxy = await herdless(origin, clock);
      const slow = get(proxy, "/doc");
      await vi.waitFor(() => expect(held).toHaveLength(1));
      clock.advance(1_000);
      // The attacker (or the editor) writes while that fill runs: the copy it brings is the old page.
      const post = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${proxy}/doc`, { method: "POST", agent: false }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.end("new text");
      });
      expect(post).toBe(200);
      clock.advance(1_000);
      held.splice(0).forEach((answer) => answer());
      expect((await slow).body.startsWith("version 1")).toBe(true);

      const victim = await get(proxy, "/doc");
      expect(victim.body.startsWith("version 2")).toBe(true);
      expect(victim.headers["cache-status"]).toMatch(/fwd=uri-miss/);
      expect(gets).toBe(2);
      const next = await get(proxy, "/doc"); // the new page is stored as usual
      expect([next.body.startsWith("version 2"), next.headers["cache-status"]]).toEqual([
        true,
        expect.stringMatching(/hit/),
      ]);
      expect(gets).toBe(2);
    },
  );

  it.each([
    ["a Set-Cookie", { "set-cookie": "session=victim-1" }, {}],
    ["Cache-Control: private", { "cache-control": "private" }, {}],
    ["Cache-Control: no-store", { "cache-control": "no-store" }, {}],
    ["the victim's Authorization (RFC 9111 §3.5)", {}, { authorization: "Bearer victim" }],
  ] as [string, Record<string, string>, Record<string, string>][])(
    "an origin error carrying %s answers the victim's request alone, never the requests that waited on the same fetch",
    async (_what, errorHeaders, victimHeaders) => {
      // The error page names the request it answers, as a framework's debug page does.
      const held: (() => void)[] = [];
      let requests = 0;
      let holding = true;
      const origin = await serving((req, res) => {
        const answer = () =>
          res
            .writeHead(503, { "content-type": "text/plain", ...errorHeaders })
            .end(`error page for ${req.headers.authorization ?? "anonymous"} #${requests}`);
        requests++;
        if (holding) held.push(answer);
        else answer();
      });
      const proxy = await herdless(origin, new ManualClock(Date.now()));
      const victim = getWith(proxy, "/account", victimHeaders);
      await vi.waitFor(() => expect(held).toHaveLength(1));
      const attackers = [get(proxy, "/account"), get(proxy, "/account")];
      // Real time for ordering only: the attackers reach the victim's fetch while it is held.
      await new Promise((resolve) => setTimeout(resolve, 100));
      holding = false;
      held.splice(0).forEach((answer) => answer());
      const mine = await victim;
      expect(mine.status).toBe(503);
      expect(mine.body).toBe(`error page for ${victimHeaders.authorization ?? "anonymous"} #1`);
      // Requests unlike the victim's (no Authorization) do not take its failure at all: they ask
      // once more, together (an unconfirmed error is one request's: flight.ts othersUnconfirmed).
      const alike = victimHeaders.authorization === undefined;
      for (const attacker of await Promise.all(attackers)) {
        expect(attacker.status).toBe(503);
        if (alike) expect(attacker.headers["cache-status"]).toMatch(/fwd-status=503; collapsed; detail=origin-error/);
        expect(attacker.headers["set-cookie"]).toBeUndefined();
        expect(attacker.body).not.toContain("#1");
      }
      expect(requests).toBe(alike ? 1 : 2);
    },
  );

  it("RFC 9111 §5.2.2.4 / §5.2.2.7: the fields a qualified no-cache or private names (Set-Cookie among them) reach the request that made the fill, never the requests that waited on it nor a later visitor", async () => {
    const held: (() => void)[] = [];
    let requests = 0;
    const origin = await serving((_req, res) => {
      requests++;
      held.push(() =>
        res
          .writeHead(200, {
            "cache-control": 'max-age=60, no-cache="x-a, set-cookie", private="x-user"',
            "x-a": "1",
            "x-user": "ann",
            "set-cookie": "session=ann",
            "content-type": "text/plain",
          })
          .end("ann's page, public parts"),
      );
    });
    const proxy = await herdless(origin, new ManualClock(Date.now()));
    const owner = get(proxy, "/account");
    await vi.waitFor(() => expect(held).toHaveLength(1));
    const waiters = [get(proxy, "/account"), get(proxy, "/account")];
    // Real time for ordering only: the waiters reach the owner's fetch while it is held.
    await new Promise((resolve) => setTimeout(resolve, 100));
    held.splice(0).forEach((answer) => answer());
    const mine = await owner;
    expect([mine.headers["x-a"], mine.headers["x-user"], mine.headers["set-cookie"]]).toEqual([
      "1",
      "ann",
      ["session=ann"],
    ]);
    const victims = [...(await Promise.all(waiters)), await get(proxy, "/account")];
    for (const victim of victims) {
      expect(victim.body).toBe("ann's page, public parts");
      expect(victim.headers["cache-status"]).toMatch(/collapsed|hit/);
      expect([victim.headers["x-a"], victim.headers["x-user"], victim.headers["set-cookie"]]).toEqual([
        undefined,
        undefined,
        undefined,
      ]);
    }
    expect(requests).toBe(1);
  });

  it.each([
    ["a field name that is not a token (RFC 9110 §5.1)", "X Bad: 1\r\n", "Invalid header token"],
    ["whitespace before the colon (RFC 9112 §5.1)", "X-Good : 1\r\n", "Invalid header token"],
    ["a control character in a value (RFC 9110 §5.5)", "X-Split: a\u0001b\r\n", "Invalid header value char"],
    ["obs-fold line folding (RFC 9112 §5.2)", "X-Folded: a\r\n b\r\n", "Unexpected whitespace after header value"],
  ])("an origin answer with %s is a clean 502 naming the fault, never stored, never a 500", async (_, lines, fault) => {
    const { url, script } = await scriptedOrigin();
    script.rawHeaderLines = lines;
    const proxy = await herdless(url, new ManualClock(Date.now()));
    const attacker = await get(proxy, "/malformed");
    // Node's strict parser refuses the whole answer (no lenient parse on a kept-alive
    // connection, where parsers that disagree desync): the 502 says what the origin sent wrong.
    expect(attacker.status).toBe(502);
    expect(attacker.body).toContain("is not valid HTTP/1.1");
    expect(attacker.body).toContain(fault);
    const victim = await get(proxy, "/malformed");
    // The origin answered, however badly (as a 500 page does): asked again, never stored.
    expect([victim.status, victim.headers["cache-status"]]).toEqual([
      502,
      "herdless; fwd=uri-miss; detail=origin-error",
    ]);
    const names = Object.keys(victim.headers);
    expect(names.filter((name) => name.includes(" ") || ["x-good", "x-split", "x-folded"].includes(name))).toEqual([]);
    expect(script.requests).toBe(2);
  });

  it("an attacker who makes the origin write a control character into a header (a redirect reflecting the query) on many paths never opens the breaker: the victim's cold page is served", async () => {
    const { url, script } = await scriptedOrigin();
    const proxy = await herdless(url, new ManualClock(Date.now()));
    // As PHP's header("Location: /next?" . $_GET["r"]) writes ?r=%01: Node's parser refuses the answer whole.
    script.rawHeaderLines = "location: /next?\u0001\r\n";
    for (let i = 0; i < 8; i++) expect((await get(proxy, `/redirect${i}?r=%01`)).status).toBe(502);
    script.rawHeaderLines = "";
    const victim = await get(proxy, "/home");
    expect([victim.status, victim.body]).toEqual([200, "page for /home"]);
  });
});

/** A POST to `path` with a small body, as a form sends it; its status. */
function post(base: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method: "POST", agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end("new text");
  });
}

describe("security: RFC 9111 §4.4, a write holds for every request after it returned (Node)", () => {
  it("a copy a POST invalidated while its revalidation ran is never served stale-if-error, to the writer's next request nor to the request that led that revalidation", async () => {
    let down = false;
    let gets = 0;
    const origin = await serving((req, res) => {
      if (req.method === "POST") return void res.writeHead(204).end();
      gets++;
      // An outage: the origin holds the request, then resets it.
      if (down) return void setTimeout(() => req.socket.destroy(), 400);
      res.writeHead(200, { "cache-control": "max-age=1" }).end(`balance v${gets}`);
    });
    const clock = new ManualClock(Date.now());
    const proxy = await herdless(origin, clock);
    expect((await get(proxy, "/balance")).body).toBe("balance v1");
    clock.advance(2_000);
    down = true;
    // The copy expired; its revalidation is in flight when the user's write succeeds.
    const leader = get(proxy, "/balance");
    await vi.waitFor(() => expect(gets).toBe(2));
    clock.advance(5);
    expect(await post(proxy, "/balance")).toBe(204);
    clock.advance(5);
    // Before: both joined that revalidation, and its failure was hidden behind the copy
    // the write had made obsolete (200 balance v1, detail=stale-if-error).
    const writer = await get(proxy, "/balance");
    for (const answer of [writer, await leader]) {
      expect(answer.status).toBe(502);
      expect(answer.body).not.toContain("balance v1");
      expect(answer.headers["cache-status"]).toMatch(/detail=origin-error$/);
    }
  });

  it("a GET sent after a successful POST never collapses onto a fill sent before it: the writer reads its write", async () => {
    let version = 1;
    let gets = 0;
    const held: (() => void)[] = [];
    const origin = await serving((req, res) => {
      if (req.method === "POST") return void (version++, res.writeHead(204).end());
      gets++;
      const page = `page v${version}`;
      const answer = () => res.writeHead(200, { "cache-control": "max-age=60" }).end(page);
      if (gets === 1) held.push(answer);
      else answer();
    });
    const clock = new ManualClock(Date.now());
    const proxy = await herdless(origin, clock);
    const slow = get(proxy, "/profile");
    await vi.waitFor(() => expect(held).toHaveLength(1));
    clock.advance(5);
    expect(await post(proxy, "/profile")).toBe(204);
    clock.advance(5);
    const writer = get(proxy, "/profile");
    // Real time for ordering only: the writer's GET reaches the running fill before it answers.
    await new Promise((resolve) => setTimeout(resolve, 100));
    held.splice(0).forEach((answer) => answer());
    expect((await slow).body).toBe("page v1");
    // Before: page v1, collapsed onto the fill sent before the write (a hard purge made it ask again).
    const mine = await writer;
    expect(mine.body).toBe("page v2");
    expect(mine.headers["cache-status"]).not.toMatch(/collapsed/);
    expect(gets).toBe(2);
  });

  it("a fill the origin answered with the old page, sent in the POST's own millisecond, is never stored after the invalidation", async () => {
    let version = 1;
    let gets = 0;
    const held: (() => void)[] = [];
    const origin = await serving((req, res) => {
      if (req.method === "POST") return void (version++, res.writeHead(204).end());
      gets++;
      const page = `page v${version}`;
      const answer = () => res.writeHead(200, { "cache-control": "max-age=60" }).end(page);
      if (gets === 1) held.push(answer);
      else answer();
    });
    // The clock does not move between the fill and the write: they share a millisecond.
    const clock = new ManualClock(Date.now());
    const proxy = await herdless(origin, clock);
    const slow = get(proxy, "/doc");
    await vi.waitFor(() => expect(held).toHaveLength(1));
    expect(await post(proxy, "/doc")).toBe(204);
    held.splice(0).forEach((answer) => answer());
    expect((await slow).body).toBe("page v1");
    clock.advance(1);
    // Before: the old page was stored over the write's mark, every visitor's hit for 60 s.
    const victim = await get(proxy, "/doc");
    expect(victim.body).toBe("page v2");
    expect(victim.headers["cache-status"]).toMatch(/fwd=uri-miss/);
    expect(gets).toBe(2);
  });
});
