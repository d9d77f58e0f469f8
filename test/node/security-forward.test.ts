import { request as httpRequest, type IncomingHttpHeaders, type RequestListener } from "node:http";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { herdless as startHerdless, servingOrigin } from "./attack-kit.ts";

/**
 * What reaches the origin and how the key is built, attacked through the Node server (its
 * socket hit path included): each test is the attacker's request, then the victim's.
 */

const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** `handler` serving on 127.0.0.1 as the origin, closed after the test; its base URL. */
const serving = (handler: RequestListener) => servingOrigin(handler, cleanup);

interface Seen {
  url: string;
  headers: IncomingHttpHeaders;
  raw: string[];
  body: string;
}

/**
 * An origin that reflects what it was sent, like the careless application an attacker
 * looks for: the page names its URL, the `lang` it read (splitting the query on `&` and
 * `;`, as some frameworks do), the Host and X-Forwarded-Host it saw and the Origin header.
 */
async function reflectingOrigin(vary?: string): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const origin = await serving((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      seen.push({ url: req.url ?? "", headers: req.headers, raw: req.rawHeaders, body });
      const query = (req.url ?? "").split("?")[1] ?? "";
      const lang = query
        .split(/[&;]/)
        .map((p) => p.split("="))
        .filter(([name]) => name === "lang")
        .map(([, v]) => v)
        .pop();
      const page =
        `url=${req.url} lang=${lang ?? "-"} host=${req.headers.host} xfh=${req.headers["x-forwarded-host"] ?? "-"} ` +
        `origin=${req.headers.origin ?? "-"} al=${req.headers["accept-language"] ?? "-"} body=${body}`;
      res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain", ...(vary ? { vary } : {}) });
      res.end(page);
    });
  });
  return { url: origin, seen };
}

/** attack-kit's herdless in front of `originUrl`, closed after the test. */
async function herdless(originUrl: string, extra: Parameters<typeof startHerdless>[1] = {}): Promise<string> {
  const running = await startHerdless(originUrl, extra);
  cleanup.push(() => running.close());
  return running.base;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function send(
  base: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${base}${path}`,
      { method: init.method ?? "GET", headers: { host: "shop.test", ...init.headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

/** A request written byte for byte (Node's client would not send two Host headers). */
function sendRaw(base: string, head: string): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(head));
    let text = "";
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes("\r\n\r\n")) socket.end();
    });
    socket.on("end", () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }));
    socket.on("error", reject);
  });
}

describe("attacks on what reaches the origin (Node)", () => {
  it("a reflected utm_ parameter is never sent to the origin, so it cannot be stored for the victim", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    const attack = await send(base, "/p?utm_source=%3Cscript%3Ealert(1)%3C/script%3E");
    expect(attack.body).not.toContain("script");
    const victim = await send(base, "/p");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.body).not.toContain("script");
    expect(origin.seen.map((s) => s.url)).toEqual(["/p"]);
  });

  it("a `;`-cloaked parameter behind an ignored one never reaches an origin that splits on `;`", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    await send(base, "/p?lang=en&utm_content=x;lang=evil");
    const victim = await send(base, "/p?lang=en");
    expect(victim.body).toContain("lang=en ");
    expect(victim.body).not.toContain("evil");
    expect(origin.seen.map((s) => s.url)).toEqual(["/p?lang=en"]);
  });

  it("parameter cloaking (an encoded `&`, a `?` in a value, `;` and repeated names around ignored ones) never puts a parameter the key does not hold before the origin", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    for (const cloak of [
      "/p?lang=en&utm_source=x%26lang=evil",
      "/p?lang=en&utm_content=x?lang=evil",
      "/p?utm_medium=x;lang=evil&lang=en",
      "/p?lang=en&fbclid=1&utm_source=a&utm_source=b;lang=evil",
    ])
      await send(base, cloak);
    const victim = await send(base, "/p?lang=en");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.body).toContain("lang=en ");
    // What the origin read is exactly what the key holds: one fill, the ignored pieces gone whole.
    expect(origin.seen.map((s) => s.url)).toEqual(["/p?lang=en"]);
    // A repeated name the key keeps is a page of its own, asked as the key holds it.
    await send(base, "/p?lang=en&utm_source=x&lang=evil");
    expect(origin.seen.map((s) => s.url)).toEqual(["/p?lang=en", "/p?lang=en&lang=evil"]);
  });

  it("a header split into two fields never makes the origin read part of it while the page is keyed by the whole: the iPhone page stays the iPhone's", async () => {
    // An Express origin: Node keeps the first of two User-Agent fields (and PHP behind nginx
    // before 1.23 the last of two Accept-Language fields); the page varies on User-Agent.
    const seen: (string | undefined)[] = [];
    const origin = await serving((req, res) => {
      seen.push(req.headers["user-agent"]);
      const mobile = /Mobile/.test(req.headers["user-agent"] ?? "");
      res.writeHead(200, { "cache-control": "max-age=60", vary: "User-Agent", "content-type": "text/plain" });
      res.end(mobile ? "mobile page" : "desktop page");
    });
    const base = await herdless(origin);
    const iphone =
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const [before, after] = iphone.split(", ");
    await sendRaw(
      base,
      `GET /home HTTP/1.1\r\nHost: shop.test\r\nUser-Agent: ${before}\r\nUser-Agent: ${after}\r\nConnection: close\r\n\r\n`,
    );
    const victim = await send(base, "/home", { headers: { "user-agent": iphone } });
    expect(victim.body).toBe("mobile page");
    // The origin was sent the two fields as one, the value the variant is keyed by.
    expect(seen).toEqual([iphone]);
  });

  it("a path spelling `|origin=` cannot take over the Vary: Origin variant of the page", async () => {
    const origin = await reflectingOrigin("Origin");
    const base = await herdless(origin.url);
    const first = await send(base, "/p");
    expect(first.body).toMatch(/^url=\/p .*origin=- /);
    const attack = await send(base, "/p|origin=https://app.test", { headers: { origin: "https://evil.test" } });
    expect(attack.status).toBe(200);
    const victim = await send(base, "/p", { headers: { origin: "https://app.test" } });
    expect(victim.body).toContain("url=/p ");
    expect(victim.body).toContain("origin=https://app.test");
    expect(victim.body).not.toContain("evil");
  });

  it("X-Forwarded-Host and its kin are stripped: the origin never builds a page from them", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    await send(base, "/p", {
      headers: {
        "x-forwarded-host": "evil.test",
        "x-original-url": "/admin",
        "x-http-method-override": "DELETE",
        forwarded: "host=evil.test",
      },
    });
    const victim = await send(base, "/p");
    expect(victim.body).toContain("xfh=-");
    expect(victim.body).not.toContain("evil");
    for (const name of ["x-forwarded-host", "x-original-url", "x-http-method-override", "forwarded"])
      expect(origin.seen[0]?.headers[name]).toBeUndefined();
  });

  it("scheme and path overrides PHP and WSGI apps read (CF-Visitor, CloudFront-Forwarded-Proto, X-Proto, X-ARR-SSL, X-Script-Name, X-Original-URI, X-Forwarded-Uri, X-Forwarded-Path, X-Envoy-Original-Path, X-Original-Path, X-Rewrite-Path) never shape the page stored for the victim", async () => {
    // A WordPress config and a Flask ReverseProxied middleware in one: the scheme and the
    // mount point of every link come from headers a proxy is trusted to set.
    const seen: IncomingHttpHeaders[] = [];
    const origin = await serving((req, res) => {
      seen.push(req.headers);
      const h = req.headers;
      const https =
        String(h["cf-visitor"]).includes('"https"') ||
        h["cloudfront-forwarded-proto"] === "https" ||
        h["x-proto"] === "SSL" ||
        h["x-arr-ssl"] !== undefined ||
        h["x-appservice-proto"] === "https" ||
        h["x-forwarded-https"] === "on";
      const path =
        h["x-original-uri"] ??
        h["x-forwarded-uri"] ??
        h["x-forwarded-path"] ??
        h["x-envoy-original-path"] ??
        h["x-original-path"] ??
        h["x-rewrite-path"] ??
        req.url;
      const link = `${https ? "https" : "http"}://${String(h.host)}${String(h["x-script-name"] ?? "")}${String(path)}`;
      res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/html" });
      res.end(`<a href="${link}">next</a>`);
    });
    const base = await herdless(origin);
    const forged = {
      "cf-visitor": '{"scheme":"https"}',
      "cloudfront-forwarded-proto": "https",
      "x-proto": "SSL",
      "x-arr-ssl": "2048|256|CN=evil",
      "x-appservice-proto": "https",
      "x-forwarded-https": "on",
      "x-script-name": "/evil",
      "x-original-uri": "/evil",
      "x-forwarded-uri": "/evil",
      "x-forwarded-path": "/evil",
      "x-envoy-original-path": "/evil",
      "x-original-path": "/evil",
      "x-rewrite-path": "/evil",
    };
    await send(base, "/p", { headers: forged });
    const victim = await send(base, "/p");
    expect(victim.body).toBe(`<a href="http://${new URL(origin).host}/p">next</a>`);
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    for (const name of Object.keys(forged)) expect(seen[0]?.[name], name).toBeUndefined();
  });

  it("Next.js's internal headers (x-middleware-subrequest: CVE-2025-29927, x-now-route-matches: CVE-2024-46982) never reach the origin: the middleware is never skipped for the page stored for the victim", async () => {
    // A Next.js app whose middleware rewrites /p to the visitor's locale: a client's
    // x-middleware-subrequest naming the middleware made Next.js skip it (before 15.2.3), and
    // the unlocalized 404 its missing route gives was every visitor's page.
    const seen: IncomingHttpHeaders[] = [];
    const origin = await serving((req, res) => {
      seen.push(req.headers);
      const skipped = String(req.headers["x-middleware-subrequest"] ?? "").includes("middleware");
      const forcedStatic = req.headers["x-now-route-matches"] !== undefined;
      res.writeHead(skipped ? 404 : 200, {
        "cache-control": forcedStatic ? "s-maxage=1, stale-while-revalidate" : "max-age=60",
        "content-type": "text/html",
      });
      res.end(skipped ? "not found" : "<p>en page</p>");
    });
    const base = await herdless(origin);
    const forged = {
      "x-middleware-subrequest": "middleware:middleware:middleware:middleware:middleware",
      "x-now-route-matches": "1",
    };
    await send(base, "/p", { headers: forged });
    const victim = await send(base, "/p");
    expect(victim.status).toBe(200);
    expect(victim.body).toBe("<p>en page</p>");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    for (const name of Object.keys(forged)) expect(seen[0]?.[name], name).toBeUndefined();
  });

  it("Nuxt's x-nuxt-no-ssr never reaches the origin: the client-only shell a Nuxt before 3.4 renders for it is never the page stored for the victim", async () => {
    const seen: IncomingHttpHeaders[] = [];
    const origin = await serving((req, res) => {
      seen.push(req.headers);
      // A Nuxt 3 page with `routeRules: { "/**": { swr: 60 } }`.
      const shell = req.headers["x-nuxt-no-ssr"] !== undefined;
      res.writeHead(200, { "cache-control": "s-maxage=60, stale-while-revalidate", "content-type": "text/html" });
      res.end(shell ? '<div id="__nuxt"></div>' : '<div id="__nuxt"><h1>Product</h1></div>');
    });
    const base = await herdless(origin);
    await send(base, "/product", { headers: { "x-nuxt-no-ssr": "1" } });
    const victim = await send(base, "/product");
    expect(victim.body).toBe('<div id="__nuxt"><h1>Product</h1></div>');
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.["x-nuxt-no-ssr"]).toBeUndefined();
  });

  it("X_Forwarded_Host, If_None_Match and kin spelled with underscores never reach a CGI-style origin, nor Range as Request-Range", async () => {
    // PHP's FastCGI, WSGI and Rack name `X_Forwarded_Host` and `X-Forwarded-Host` alike
    // (HTTP_X_FORWARDED_HOST), and Apache httpd honours Request-Range as Range.
    const seen: string[][] = [];
    const origin = await serving((req, res) => {
      seen.push(req.rawHeaders);
      const env = new Map<string, string>();
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        env.set(`HTTP_${req.rawHeaders[i]!.toUpperCase().replaceAll("-", "_")}`, req.rawHeaders[i + 1]!);
      const headers = { "cache-control": "max-age=60", etag: '"v1"', "content-type": "text/plain" };
      if (env.get("HTTP_IF_NONE_MATCH") === '"v1"') return void res.writeHead(304, headers).end();
      const range = env.get("HTTP_RANGE") ?? env.get("HTTP_REQUEST_RANGE");
      if (range) return void res.writeHead(206, { ...headers, "content-range": "bytes 0-1/20" }).end("li");
      if (req.url === "/ua")
        return void res.writeHead(200, { ...headers, vary: "User-Agent" }).end(env.get("HTTP_USER_AGENT"));
      res.writeHead(200, headers);
      res.end(
        `link=https://${env.get("HTTP_X_FORWARDED_HOST") ?? "shop.test"}${env.get("HTTP_X_ORIGINAL_URL") ?? req.url} ` +
          `client=${env.get("HTTP_X_FORWARDED_FOR")} proto=${env.get("HTTP_X_FORWARDED_PROTO")}`,
      );
    });
    const base = await herdless(origin);
    const aliases = {
      X_Forwarded_Host: "evil.test",
      X_Original_URL: "/admin",
      X_Forwarded_For: "6.6.6.6",
      X_Forwarded_Proto: "https",
      If_None_Match: '"v1"',
    };
    for (const [path, headers] of [
      ["/p", aliases],
      ["/r", { "Request-Range": "bytes=0-1" }],
      ["/u", { Request_Range: "bytes=0-1" }],
    ] as const) {
      const attacker = await send(base, path, { headers });
      expect(attacker.status, path).toBe(200);
      const victim = await send(base, path);
      expect(victim.headers["cache-status"], path).toMatch(/hit/);
      expect(victim.body, path).toBe(`link=https://shop.test${path} client=127.0.0.1 proto=http`);
    }
    expect(seen).toHaveLength(3);
    // Beside the real one, an underscore spelling would be what the origin read: the iPhone page stored as desktop.
    await send(base, "/ua", { headers: { "User-Agent": "iphone", User_Agent: "desktop" } });
    const iphone = await send(base, "/ua", { headers: { "User-Agent": "iphone" } });
    expect(iphone.headers["cache-status"]).toMatch(/hit/);
    expect(iphone.body).toBe("iphone");
    for (const raw of seen)
      for (const name of [...Object.keys(aliases), "Request-Range", "Request_Range", "User_Agent"])
        expect(
          raw.map((n) => n.toLowerCase()),
          name,
        ).not.toContain(name.toLowerCase());
  });

  it("an Accept_Language sent alone never picks the language of the page stored for visitors sending none", async () => {
    // A CGI-style origin (PHP FastCGI, WSGI) reads Accept_Language as HTTP_ACCEPT_LANGUAGE.
    const origin = await serving((req, res) => {
      const language = [req.headers["accept-language"] ?? req.headers["accept_language"] ?? "en"].flat().join();
      res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain", vary: "Accept-Language" });
      res.end(`lang=${language}`);
    });
    const base = await herdless(origin);
    await send(base, "/welcome", { headers: { accept_language: "xx-defaced" } });
    const victim = await send(base, "/welcome");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.body).toBe("lang=en");
  });

  it("a forged Surrogate-Capability claiming ESI never makes the page stored for everyone one with raw ESI tags", async () => {
    // An ESI origin (Symfony's HttpCache, Varnish's backends) sends the tags for a surrogate that
    // said it processes them, and the rendered page to anyone else.
    const seen: (string | undefined)[] = [];
    const origin = await serving((req, res) => {
      const claim = [req.headers["surrogate-capability"] ?? []].flat().join(", ") || undefined;
      seen.push(claim);
      const esi = /ESI\/1\.0/.test(claim ?? "");
      res.writeHead(200, {
        "cache-control": "max-age=60",
        "content-type": "text/html",
        ...(esi ? { "surrogate-control": 'content="ESI/1.0"' } : {}),
      });
      res.end(esi ? '<esi:include src="/cart"/>' : "<p>cart: 0 items</p>");
    });
    const base = await herdless(origin);
    await send(base, "/home", { headers: { "surrogate-capability": 'evil="Surrogate/1.0 ESI/1.0"' } });
    const victim = await send(base, "/home");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.body).toBe("<p>cart: 0 items</p>");
    expect(seen).toEqual(['herdless="Surrogate/1.0"']);
  });

  it("a forged client address (X-Forwarded-For, X-Real-IP, True-Client-IP) never picks the page stored for everyone", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    // X-Real-IP and kin, and what PHP's client-IP helpers try first (HTTP_CLIENT_IP, HTTP_X_FORWARDED …).
    const claims = [
      ...["x-real-ip", "true-client-ip", "client-ip", "x-forwarded", "forwarded-for", "x-originating-ip"],
      // What Java's client-IP helpers try next, and other platforms' and proxies' words for the client.
      ...["proxy-client-ip", "wl-proxy-client-ip", "x-proxyuser-ip", "x-forwarded-client-ip", "x-real-client-ip"],
      ...["fly-client-ip", "x-azure-clientip", "x-azure-socketip", "x-nf-client-connection-ip", "do-connecting-ip"],
      ...["oxygen-buyer-ip", "x-envoy-external-address", "x-original-forwarded-for"],
    ];
    const forged = {
      "x-forwarded-for": "6.6.6.6",
      ...Object.fromEntries([...claims, "x-remote-ip", "x-remote-addr", "fastly-client-ip"].map((n) => [n, "6.6.6.6"])),
    };
    await send(base, "/geo", { headers: forged });
    await send(base, "/geo");
    // The origin reads the client from these (a framework takes XFF's first address): on the
    // fill it sees herdless's word for the client, never the attacker's.
    const fill = origin.seen[0]!.headers;
    expect(fill["x-forwarded-for"]).toBe("127.0.0.1");
    for (const name of Object.keys(forged).slice(1)) expect(fill[name], name).toBeUndefined();
    expect(origin.seen).toHaveLength(1);
    // A request answered to its client alone (a cookie: relayed) keeps the chain it sent.
    await send(base, "/geo", { headers: { ...forged, cookie: "s=1" } });
    expect(origin.seen[1]!.headers["x-forwarded-for"]).toBe("6.6.6.6, 127.0.0.1");
  });

  it("Cloudflare's and other CDNs' client headers forged (CF-Connecting-IP, CF-IPCountry, CloudFront-Viewer-Country, X-Vercel-IP-Country …) never pick the page stored for everyone", async () => {
    // Apps behind Cloudflare read the client's address and country from these; a client that
    // reaches herdless without Cloudflare in between writes them itself.
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    const forged = {
      "cf-connecting-ip": "6.6.6.6",
      "cf-connecting-ipv6": "2001:db8::6",
      "cf-pseudo-ipv4": "6.6.6.6",
      "cf-ipcountry": "KP",
      "cf-ipcity": "Pyongyang",
      "cloudfront-viewer-country": "KP",
      "cloudfront-is-mobile-viewer": "true",
      "x-vercel-ip-country": "KP",
      "x-appengine-country": "KP",
      "x-akamai-edgescape": "country_code=KP",
    };
    await send(base, "/geo", { headers: forged });
    await send(base, "/geo");
    expect(origin.seen).toHaveLength(1);
    const fill = origin.seen[0]!.headers;
    for (const name of Object.keys(forged)) expect(fill[name], name).toBeUndefined();
    expect(fill["x-forwarded-for"]).toBe("127.0.0.1");
  });

  it("a response that varies on X-Forwarded-For is one client's: never stored for the next client", async () => {
    const origin = await reflectingOrigin("X-Forwarded-For");
    const base = await herdless(origin.url);
    const attacker = await send(base, "/mine");
    const victim = await send(base, "/mine");
    expect(origin.seen).toHaveLength(2);
    expect(attacker.headers["cache-status"]).not.toContain("stored");
    expect(victim.headers["cache-status"]).toContain("fwd=uri-miss");
  });

  it("the origin sees the client's end-to-end headers on a fill, minus hop-by-hop ones, with XFF, XFP and Via", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    await send(base, "/p", {
      headers: {
        "x-api-version": "3",
        "x-requested-with": "XMLHttpRequest",
        connection: "x-hop",
        "x-hop": "secret",
        "proxy-foo": "1",
        "x-forwarded-proto": "http",
        cookie: "session=victim",
      },
    });
    const headers = origin.seen[0]!.headers;
    expect(headers["x-api-version"]).toBe("3");
    expect(headers["x-requested-with"]).toBe("XMLHttpRequest");
    expect(headers["x-hop"]).toBeUndefined();
    expect(headers["proxy-foo"]).toBeUndefined();
    expect(headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(headers["x-forwarded-proto"]).toBe("http");
    expect(headers.via).toBe("1.1 herdless");
    // A request with a cookie is relayed as it is (nothing stored), so the origin gets it.
    expect(headers.cookie).toBe("session=victim");
  });

  it("the first request for a Vary'd URL gets its own variant, and a collapsed waiter with another value its own", async () => {
    const origin = await reflectingOrigin("Accept-Language");
    const base = await herdless(origin.url);
    const [fr, de] = await Promise.all([
      send(base, "/v", { headers: { "accept-language": "fr" } }),
      send(base, "/v", { headers: { "accept-language": "de" } }),
    ]);
    expect(fr.body).toContain("al=fr ");
    expect(de.body).toContain("al=de ");
    const again = await send(base, "/v", { headers: { "accept-language": "fr" } });
    expect(again.headers["cache-status"]).toMatch(/hit/);
    expect(again.body).toContain("al=fr ");
  });
});

describe("RFC 9110 §7.2 on Node: the Host the origin sees follows origin.hostHeader", () => {
  it("origin (default): the origin's own; client: the visitor's, per site; a name: that name, on fills and relays", async () => {
    const origin = await reflectingOrigin();
    const own = await herdless(origin.url);
    const client = await herdless(origin.url, { origin: { url: origin.url, hostHeader: "client" } });
    const fixed = await herdless(origin.url, { origin: { url: origin.url, hostHeader: "www.example.com" } });
    const originHost = new URL(origin.url).host;

    expect((await send(own, "/h")).body).toContain(`host=${originHost} `);
    // Two sites behind one origin (name-based virtual hosts): each gets its own page, cached apart.
    expect((await send(client, "/h")).body).toContain("host=shop.test ");
    expect((await send(client, "/h", { headers: { host: "blog.test" } })).body).toContain("host=blog.test ");
    expect((await send(client, "/h")).body).toContain("host=shop.test ");
    expect((await send(fixed, "/h")).body).toContain("host=www.example.com ");
    // A relayed request (unsafe method) carries the same Host as a fill.
    expect((await send(client, "/post", { method: "POST", body: "x" })).body).toContain("host=shop.test ");
    expect(origin.seen.map((s) => s.headers.host)).toEqual([
      originHost,
      "shop.test",
      "blog.test",
      "www.example.com",
      "shop.test",
    ]);
  });
});

describe("requests herdless cannot serve correctly are refused clearly (Node)", () => {
  it("an invalid Host is a 400, never a 500, and the victim's next request is served", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    for (const host of ["a b", "x|y", "@", "a@b.test", "shop.test:99999"]) {
      const attack = await sendRaw(base, `GET /p HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(attack.status, host).toBe(400);
      expect(attack.text).toMatch(/invalid Host header/);
    }
    const victim = await send(base, "/p");
    expect(victim.status).toBe(200);
    expect(origin.seen).toHaveLength(1);
  });

  it("two Host headers are a 400, so a cache and an origin cannot disagree on the site", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    const attack = await sendRaw(
      base,
      "GET /p HTTP/1.1\r\nHost: shop.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
    );
    expect(attack.status).toBe(400);
    expect(attack.text).toMatch(/more than one Host header/);
    expect(origin.seen).toHaveLength(0);
    expect((await send(base, "/p")).body).toContain("host=127.0.0.1");
  });

  it("an upload with Expect: 100-continue reaches the origin and is not an origin failure", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url, { breaker: { failureThreshold: 1 } });
    const upload = await new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
      let continued = false;
      const req = httpRequest(
        `${base}/upload`,
        {
          method: "POST",
          headers: { host: "shop.test", expect: "100-continue", "content-type": "text/plain", "content-length": "5" },
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), continued }),
          );
        },
      );
      req.on("continue", () => {
        continued = true;
        req.end("hello");
      });
      req.on("error", reject);
    });
    expect(upload).toMatchObject({ status: 200, continued: true });
    expect(upload.body).toContain("body=hello");
    expect(origin.seen[0]?.headers.expect).toBeUndefined();
    expect(origin.seen[0]?.headers["content-length"]).toBe("5");
    // With a breaker that opens on the first failure, the next request still reaches the origin.
    expect((await send(base, "/after")).status).toBe(200);
  });
});

/**
 * An origin that forces HTTPS from behind its proxy (Django's SECURE_SSL_REDIRECT, Rails'
 * force_ssl): a request it is told came over http gets a cacheable redirect to https, one
 * told https gets the page, which names the scheme it was told.
 */
async function httpsOnlyOrigin(): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const origin = await serving((req, res) => {
    seen.push({ url: req.url ?? "", headers: req.headers, raw: req.rawHeaders, body: "" });
    const proto = req.headers["x-forwarded-proto"];
    if (proto !== "https") {
      res.writeHead(301, { location: `https://${req.headers.host}${req.url}`, "cache-control": "max-age=600" });
      res.end();
      return;
    }
    res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain" });
    res.end(`page for ${proto}`);
  });
  return { url: origin, seen };
}

describe("the client's scheme behind a TLS-terminating proxy (Node)", () => {
  it("origin.trustForwardedProto: a visitor over https gets the page, not the redirect an origin forcing https stored for plain http", async () => {
    const origin = await httpsOnlyOrigin();
    const base = await herdless(origin.url, { origin: { hostHeader: "client", trustForwardedProto: true } });
    // The attacker asks over plain http (or forges it): the origin's redirect is stored, for http.
    const attack = await send(base, "/account", { headers: { "x-forwarded-proto": "http" } });
    expect(attack.status).toBe(301);
    const victim = await send(base, "/account", { headers: { "x-forwarded-proto": "https" } });
    expect(victim.status).toBe(200);
    expect(victim.body).toBe("page for https");
    const again = await send(base, "/account", { headers: { "x-forwarded-proto": "https" } });
    expect(again.headers["cache-status"]).toMatch(/^herdless; hit/);
    expect(again.body).toBe("page for https");
    // One origin request per scheme, each told the scheme it is keyed by.
    expect(origin.seen.map((s) => s.headers["x-forwarded-proto"])).toEqual(["http", "https"]);
    // The redirect stays http's: a plain request is a hit on it.
    const plain = await send(base, "/account");
    expect(plain.status).toBe(301);
    expect(plain.headers["cache-status"]).toMatch(/^herdless; hit/);
  });

  it("origin.trustForwardedProto: a forged X-Forwarded-Proto only keys the attacker's own request apart; its first entry decides, anything but http(s) is ignored", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url, { origin: { trustForwardedProto: true } });
    await send(base, "/p", { headers: { "x-forwarded-proto": "HTTPS, http", "x-forwarded-host": "evil.test" } });
    expect(origin.seen[0]!.headers["x-forwarded-proto"]).toBe("https");
    // A value naming no scheme is the socket's: plain http, the victim's own key.
    await send(base, "/q", { headers: { "x-forwarded-proto": "javascript" } });
    expect(origin.seen[1]!.headers["x-forwarded-proto"]).toBe("http");
    const victim = await send(base, "/q");
    expect(victim.headers["cache-status"]).toMatch(/^herdless; hit/);
    // The https page is not the plain visitor's.
    const plain = await send(base, "/p");
    expect(plain.headers["cache-status"]).not.toMatch(/hit/);
    expect(origin.seen.map((s) => [s.url, s.headers["x-forwarded-proto"]])).toEqual([
      ["/p", "https"],
      ["/q", "http"],
      ["/p", "http"],
    ]);
  });

  it("without origin.trustForwardedProto a client's X-Forwarded-Proto is ignored: the visitor gets the page stored for plain http", async () => {
    const origin = await reflectingOrigin();
    const base = await herdless(origin.url);
    await send(base, "/p", { headers: { "x-forwarded-proto": "https" } });
    const victim = await send(base, "/p");
    expect(victim.headers["cache-status"]).toMatch(/^herdless; hit/);
    expect(origin.seen.map((s) => s.headers["x-forwarded-proto"])).toEqual(["http"]);
  });

  it("origin.forwardedHeaders false: the proxy in front owns X-Forwarded-Proto, so a forged http is keyed apart and the origin is told exactly the scheme keyed", async () => {
    const origin = await httpsOnlyOrigin();
    const base = await herdless(origin.url, { origin: { hostHeader: "client", forwardedHeaders: false } });
    // Before, the forged value passed as it was and its redirect was stored for every https visitor.
    const attack = await send(base, "/cart", { headers: { "x-forwarded-proto": "http" } });
    expect(attack.status).toBe(301);
    // Two fields: the first entry decides and the origin reads that one value, never the last.
    const victim = await send(base, "/cart", { headers: { "x-forwarded-proto": "https, http" } });
    expect(victim.status).toBe(200);
    expect(origin.seen.map((s) => s.headers["x-forwarded-proto"])).toEqual(["http", "https"]);
  });

  it("a purge of the URL clients see takes the page under either scheme", async () => {
    const origin = await reflectingOrigin();
    const running = await startHerdless(origin.url, {
      origin: { trustForwardedProto: true },
      admin: { token: "t0ken-for-purges" },
    });
    cleanup.push(() => running.close());
    const base = running.base;
    await send(base, "/p", { headers: { "x-forwarded-proto": "https" } });
    await send(base, "/p");
    expect(origin.seen).toHaveLength(2);
    const purged = await send(base, "/__herdless/purge", {
      method: "POST",
      headers: { authorization: "Bearer t0ken-for-purges", "content-type": "application/json" },
      body: JSON.stringify({ urls: ["https://shop.test/p"] }),
    });
    expect(purged.status).toBe(200);
    await send(base, "/p", { headers: { "x-forwarded-proto": "https" } });
    await send(base, "/p");
    expect(origin.seen).toHaveLength(4);
  });
});
