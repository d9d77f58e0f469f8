import { describe, expect, it } from "vitest";
import { dataCenter, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * What reaches the origin and how the key is built, attacked through the Worker in workerd:
 * each test is the attacker's request, then the victim's. The test origin records every
 * request's path and headers and answers `<path> #<n>`.
 */

async function setup(headers: Record<string, string> = {}) {
  const origin = await testOrigin({ headers: { "cache-control": "max-age=60", ...headers } });
  const edge = dataCenter(`sec-${crypto.randomUUID().slice(0, 8)}`, edgeEnv(origin.url));
  // Keys (and so coordinator objects) are shared by every test in the file: each test has its own path.
  const p = `/${crypto.randomUUID().slice(0, 8)}`;
  return { origin, edge, p };
}

describe("attacks on what reaches the origin (Worker)", () => {
  it("a reflected utm_ parameter is never sent to the origin, so it cannot be stored for the victim", async () => {
    const { origin, edge, p } = await setup();
    const attack = await edge.get(`${p}?utm_source=%3Cscript%3Ealert(1)%3C/script%3E`);
    expect(attack.body).toBe(`${p} #1`);
    const victim = await edge.get(p);
    expect(victim.cacheStatus).toMatch(/hit/);
    expect(victim.body).toBe(`${p} #1`);
    expect((await origin.stats()).requests.map((r) => r.path)).toEqual([p]);
  });

  it("a `;`-cloaked parameter behind an ignored one never reaches the origin", async () => {
    const { origin, edge, p } = await setup();
    await edge.get(`${p}?lang=en&utm_content=x;lang=evil`);
    const victim = await edge.get(`${p}?lang=en`);
    expect(victim.body).toBe(`${p}?lang=en #1`);
    expect((await origin.stats()).requests.map((r) => r.path)).toEqual([`${p}?lang=en`]);
  });

  it("a path spelling `|origin=` cannot take over the Vary: Origin variant of the page", async () => {
    const { origin, edge, p } = await setup({ vary: "Origin" });
    expect((await edge.get(p)).body).toBe(`${p} #1`);
    const attack = await edge.get(`${p}|origin=https://app.test`, { headers: { origin: "https://evil.test" } });
    expect(attack.status).toBe(200);
    const victim = await edge.get(p, { headers: { origin: "https://app.test" } });
    expect(victim.body).toMatch(new RegExp(`^${p} #\\d$`));
    const requests = (await origin.stats()).requests;
    const victimRequest = requests.find((r) => r.path === p && r.headers.origin === "https://app.test");
    expect(victimRequest).toBeDefined();
  });

  it("every origin request opts out of Cloudflare's own cache: a victim's relayed page cannot be kept there for a fill", async () => {
    // On Cloudflare an orange-clouded origin hostname has the zone's cache in between, which
    // keys on no cookie. Locally workerd shows the opt-out (`cache: "no-store"`) as the
    // no-cache fields it adds to the request.
    const { origin, edge, p } = await setup();
    const victim = await edge.get(`${p}/x.css`, { headers: { cookie: "session=victim" } });
    expect(victim.status).toBe(200);
    const attacker = await edge.get(`${p}/x.css`);
    expect(attacker.status).toBe(200);
    const requests = (await origin.stats()).requests;
    expect(requests).toHaveLength(2);
    for (const request of requests) {
      expect(request.headers.pragma).toBe("no-cache");
      expect(request.headers["cache-control"]).toBe("no-cache");
    }
  });

  it("X-Forwarded-Host and its kin are stripped: the origin never sees them", async () => {
    const { origin, edge, p } = await setup();
    await edge.get(p, {
      headers: {
        "x-forwarded-host": "evil.test",
        "x-original-url": "/admin",
        "x-http-method-override": "DELETE",
        "x-forwarded-method": "DELETE",
        "x-original-method": "DELETE",
      },
    });
    const victim = await edge.get(p);
    expect(victim.cacheStatus).toMatch(/hit/);
    const seen = (await origin.stats()).requests[0]!.headers;
    expect(seen["x-forwarded-host"]).toBeUndefined();
    expect(seen["x-original-url"]).toBeUndefined();
    expect(seen["x-http-method-override"]).toBeUndefined();
    expect([seen["x-forwarded-method"], seen["x-original-method"]]).toEqual([undefined, undefined]);
  });

  it("scheme and path overrides PHP and WSGI apps read (CF-Visitor, CloudFront-Forwarded-Proto, X-Proto, X-ARR-SSL, X-Script-Name, X-Original-URI, X-Forwarded-Uri, X-Forwarded-Path, X-Envoy-Original-Path, X-Original-Path, X-Rewrite-Path) never reach the origin", async () => {
    const { origin, edge, p } = await setup();
    const forged = {
      "cf-visitor": '{"scheme":"http"}',
      "cloudfront-forwarded-proto": "http",
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
    await edge.get(p, { headers: forged });
    expect((await edge.get(p)).cacheStatus).toMatch(/hit/);
    const seen = (await origin.stats()).requests[0]!.headers;
    for (const name of Object.keys(forged)) expect(seen[name], name).toBeUndefined();
  });

  it("Next.js's internal headers (x-middleware-subrequest: CVE-2025-29927, x-now-route-matches: CVE-2024-46982) never reach the origin", async () => {
    const { origin, edge, p } = await setup();
    const forged = { "x-middleware-subrequest": "middleware:middleware:middleware", "x-now-route-matches": "1" };
    await edge.get(p, { headers: forged });
    expect((await edge.get(p)).cacheStatus).toMatch(/hit/);
    const seen = (await origin.stats()).requests[0]!.headers;
    for (const name of Object.keys(forged)) expect(seen[name], name).toBeUndefined();
  });

  it("Nuxt's x-nuxt-no-ssr (the client-only shell in place of the rendered page, before Nuxt 3.4) never reaches the origin", async () => {
    const { origin, edge, p } = await setup();
    await edge.get(p, { headers: { "x-nuxt-no-ssr": "1", x_nuxt_no_ssr: "1" } });
    expect((await edge.get(p)).cacheStatus).toMatch(/hit/);
    const seen = (await origin.stats()).requests[0]!.headers;
    expect(seen["x-nuxt-no-ssr"]).toBeUndefined();
    expect(seen["x_nuxt_no_ssr"]).toBeUndefined();
  });

  it("X_Forwarded_Host, If_None_Match and kin spelled with underscores (a CGI origin's X-Forwarded-Host) and Request-Range never reach the origin", async () => {
    const { origin, edge, p } = await setup();
    const aliases = {
      x_forwarded_host: "evil.test",
      x_original_url: "/admin",
      x_forwarded_for: "6.6.6.6",
      x_forwarded_proto: "http",
      if_none_match: '"v1"',
      "request-range": "bytes=0-1",
      request_range: "bytes=0-1",
      // Beside the real User-Agent, a CGI-style origin would read one of the two.
      user_agent: "desktop",
    };
    await edge.get(p, { headers: { ...aliases, "user-agent": "iphone" } });
    const victim = await edge.get(p);
    expect(victim.cacheStatus).toMatch(/hit/);
    const seen = (await origin.stats()).requests[0]!.headers;
    for (const name of Object.keys(aliases)) expect(seen[name], name).toBeUndefined();
  });

  it("a Content-Type or Content-Encoding on a body-less GET never reaches the fill stored for everyone (an origin parsing it answers 400)", async () => {
    const { origin, edge, p } = await setup();
    await edge.get(p, { headers: { "content-type": "multipart/form-data; boundary=x", "content-encoding": "gzip" } });
    expect((await edge.get(p)).cacheStatus).toMatch(/hit/);
    const seen = (await origin.stats()).requests[0]!.headers;
    expect([seen["content-type"], seen["content-encoding"]]).toEqual([undefined, undefined]);
  });

  it("Max-Forwards, Early-Data and an HTTP2-Settings without its upgrade never reach the fill stored for everyone (an origin refusing them answers 400 or 425 Too Early)", async () => {
    const { origin, edge, p } = await setup();
    const headers = { "max-forwards": "0", "early-data": "1", "http2-settings": "AAMAAABkAARAAAAAAAIAAAAA" };
    expect((await edge.get(p, { headers })).status).toBe(200);
    expect((await edge.get(p)).cacheStatus).toMatch(/hit/);
    const seen = (await origin.stats()).requests[0]!.headers;
    for (const name of Object.keys(headers)) expect(seen[name], name).toBeUndefined();
  });

  it("a forged client address (X-Forwarded-For, X-Real-IP, True-Client-IP) never reaches the fill stored for everyone", async () => {
    const { origin, edge, p } = await setup();
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
    await edge.get(p, { headers: { ...forged, "cf-connecting-ip": "203.0.113.9" } });
    expect((await edge.get(p)).cacheStatus).toMatch(/hit/);
    const seen = (await origin.stats()).requests[0]!.headers;
    expect(seen["x-forwarded-for"]).toBe("203.0.113.9");
    for (const name of Object.keys(forged).slice(1)) expect(seen[name], name).toBeUndefined();
  });

  it("a response that varies on X-Forwarded-For is one client's: never stored for the next client", async () => {
    const { origin, edge, p } = await setup({ vary: "X-Forwarded-For" });
    await edge.get(p, { headers: { "cf-connecting-ip": "203.0.113.9" } });
    const victim = await edge.get(p, { headers: { "cf-connecting-ip": "198.51.100.4" } });
    expect(victim.body).toBe(`${p} #2`);
    expect((await origin.stats()).requests.map((r) => r.headers["x-forwarded-for"])).toEqual([
      "203.0.113.9",
      "198.51.100.4",
    ]);
  });

  it("the origin sees the client's end-to-end headers on a fill, with X-Forwarded-Proto and Via", async () => {
    const { origin, edge, p } = await setup();
    await edge.get(p, {
      headers: { "x-api-version": "3", "x-requested-with": "XMLHttpRequest", "x-forwarded-proto": "http" },
    });
    const seen = (await origin.stats()).requests[0]!.headers;
    expect(seen["x-api-version"]).toBe("3");
    expect(seen["x-requested-with"]).toBe("XMLHttpRequest");
    expect(seen["x-forwarded-proto"]).toBe("https");
    expect(seen.via).toContain("1.1 herdless");
  });

  it("origin.forwardedHeaders false: a forged X-Forwarded-Proto: http on an https request reaches the origin as the scheme the page is keyed by", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const edge = dataCenter(
      `sec-${crypto.randomUUID().slice(0, 8)}`,
      edgeEnv(origin.url, { origin: { forwardedHeaders: false } }),
    );
    const p = `/${crypto.randomUUID().slice(0, 8)}`;
    // Before, the value passed as it was: an origin forcing https stored its redirect for every https visitor.
    await edge.get(p, { headers: { "x-forwarded-proto": "http" } });
    await edge.get(`${p}?b`, { headers: { "x-forwarded-proto": "HTTPS, http" } });
    await edge.get(`${p}?c`);
    const told = (await origin.stats()).requests.map((r) => r.headers["x-forwarded-proto"]);
    // The Worker's URL is https (Cloudflare's edge knows the scheme); with no header sent, none is added.
    expect(told).toEqual(["https", "https", undefined]);
  });

  it("the first request for a Vary'd URL gets its own variant, the next value its own", async () => {
    const { origin, edge, p } = await setup({ vary: "Accept-Language" });
    const fr = await edge.get(p, { headers: { "accept-language": "fr" } });
    const de = await edge.get(p, { headers: { "accept-language": "de" } });
    expect(fr.body).toBe(`${p} #1`);
    expect(de.body).toBe(`${p} #2`);
    expect((await origin.stats()).requests.map((r) => r.headers["accept-language"])).toEqual(["fr", "de"]);
    const again = await edge.get(p, { headers: { "accept-language": "fr" } });
    expect(again.body).toBe(`${p} #1`);
  });
});

describe("requests herdless cannot serve correctly are refused clearly (Worker)", () => {
  it("an invalid Host is a 400, never a 500, and the victim's next request is served", async () => {
    const { origin, edge, p } = await setup();
    for (const host of ["a b", "x|y", "@", "a@b.test"]) {
      const attack = await edge.get(p, { headers: { host } });
      expect(attack.status, host).toBe(400);
      expect(attack.body).toMatch(/invalid Host header/);
    }
    expect((await edge.get(p)).status).toBe(200);
    expect(await origin.count()).toBe(1);
  });

  it("a control character in a header value (CPDoS, HTTP meta character) is a 400 naming it, never forwarded, and the victim is served", async () => {
    const { origin, edge, p } = await setup();
    // Node's parser refuses these before herdless runs; workerd's Headers lets all but NUL, CR and LF through.
    for (const value of ["a\x01b", "x\x07", "\x1b[0m", "a\x7f"]) {
      const attack = await edge.get(p, { headers: { "x-meta": value } });
      expect(attack.status, JSON.stringify(value)).toBe(400);
      expect(attack.body).toMatch(/"x-meta" header value/);
      expect(attack.cacheStatus).toMatch(/detail=refused/);
    }
    expect(await origin.count()).toBe(0);
    expect((await edge.get(p, { headers: { "x-meta": "ok \t ok" } })).status).toBe(200);
    expect((await edge.get(p)).cacheStatus).toMatch(/hit/);
    expect(await origin.count()).toBe(1);
  });

  it("two Host headers are a 400", async () => {
    const { origin, edge, p } = await setup();
    const headers = new Headers();
    headers.append("host", "edge.test");
    headers.append("host", "evil.test");
    const attack = await edge.get(p, { headers });
    expect(attack.status).toBe(400);
    expect(await origin.count()).toBe(0);
  });
});
