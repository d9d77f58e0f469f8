import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { deploy, send, type Deployment } from "./deployment.ts";

/**
 * Attacks that turn herdless's origin protection (per-key backoff, the breaker, the cap)
 * against the site's visitors: the attacker's requests, then the victim's, on one Node process
 * and a Redis fleet. The Worker twin is test/cloudflare/security-protection.test.ts.
 */
let origin: Server | undefined;
let deployment: Deployment | undefined;
afterEach(async () => {
  await deployment?.close();
  origin?.closeAllConnections();
  await new Promise((resolve) => (origin ? origin.close(resolve) : resolve(undefined)));
  origin = deployment = undefined;
});

/**
 * An origin whose application fails on inputs the cache key ignores: its gateway answers 503
 * to a request with an `X-Debug` header the application chokes on, and it stalls (past
 * herdless's timeout) on an `X-Stall` header and on a head over 4 KiB. `/down` stalls for everyone. Every other request gets the page.
 */
async function chokingOrigin(): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const server = (origin = createServer((req, res) => {
    requests++;
    req.resume();
    if (req.headers["x-debug"] !== undefined)
      return void res.writeHead(503, { "content-type": "text/plain" }).end("upstream failed");
    const stalls = req.url === "/down" || req.headers["x-stall"] !== undefined;
    if (stalls || req.rawHeaders.join("").length > 4_096) return; // never answers
    res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=60" }).end(`page ${req.url}`);
  }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests };
}

describe.each(["node", "fleet"] as const)("per-key backoff cannot be started by one client's inputs (%s)", (kind) => {
  it("an attacker's header that makes the origin answer 503 never backs the victim's cold page off", async () => {
    const o = await chokingOrigin();
    deployment = await deploy(kind, o.url, { breaker: { failureThreshold: 1_000 } });
    const urls = deployment.urls;
    // Six in a row, each past the one retry a sick status gets: on the old code the key waited 32 s.
    for (let i = 0; i < 6; i++) {
      const attack = await send(urls[i % urls.length]!, "/cold", { headers: { "x-debug": "1" } });
      expect(attack.status).toBe(503);
      expect(attack.cacheStatus).not.toMatch(/detail=backoff/);
    }
    for (const url of urls) {
      const victim = await send(url, "/cold");
      expect([victim.status, victim.body]).toEqual([200, "page /cold"]);
    }
    expect(o.requests()).toBe(7);
  });

  it("an attacker's 5 KB of headers that stall the origin past its timeout never back the victim's cold page off", async () => {
    const o = await chokingOrigin();
    // A short origin timeout: the test waits it out for real.
    deployment = await deploy(kind, o.url, { origin: { timeoutMs: 300 }, breaker: { failureThreshold: 1_000 } });
    const [url] = deployment.urls;
    const attack = await send(url!, "/slow", { headers: { "user-agent": "u".repeat(5_000) } });
    expect(attack.status).toBe(504);
    const victim = await send(url!, "/slow");
    expect([victim.status, victim.body]).toEqual([200, "page /slow"]);
    expect(o.requests()).toBe(2);
  });

  it("a visitor's ordinary request that fails still backs the key off: the origin is protected in a real outage", async () => {
    const o = await chokingOrigin();
    deployment = await deploy(kind, o.url, { origin: { timeoutMs: 300 }, breaker: { failureThreshold: 1_000 } });
    const [url] = deployment.urls;
    // A browser's request, client hints and fetch metadata included, to a page that stalls for everyone.
    const browser = {
      "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
      accept: "text/html",
      "accept-language": "en",
      "sec-fetch-mode": "navigate",
      "sec-ch-ua-mobile": "?0",
      "upgrade-insecure-requests": "1",
    };
    expect((await send(url!, "/down", { headers: browser })).status).toBe(504);
    const next = await send(url!, "/down", { headers: browser });
    expect([next.status, next.cacheStatus]).toEqual([503, "herdless; fwd=uri-miss; detail=backoff"]);
    expect(o.requests()).toBe(1);
  });

  it("visitors collapsed onto a fill an attacker's header made the origin stall ask again, and get the page, instead of the attacker's 504", async () => {
    const o = await chokingOrigin();
    deployment = await deploy(kind, o.url, { origin: { timeoutMs: 600 }, breaker: { failureThreshold: 1_000 } });
    const urls = deployment.urls;
    const attack = send(urls[0]!, "/stalled", { headers: { "x-stall": "1" } });
    // Real time for ordering only: the victims arrive while the attacker's fill waits on the origin.
    await new Promise((resolve) => setTimeout(resolve, 150));
    const victims = await Promise.all([0, 0, 1, 2].map((i) => send(urls[i % urls.length]!, "/stalled")));
    expect((await attack).status).toBe(504);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, "page /stalled"]);
    // The attacker's call, then one for every victim together.
    expect(o.requests()).toBe(2);
  });
});

/**
 * An origin that refuses a request carrying `X-Api-Version` with a 404 (after 300 ms: the
 * victims arrive while it is on its way), fresh for 60 s when `refusalFresh`, and serves the
 * page otherwise. `requests()` counts what reached it.
 */
async function versionRefusingOrigin(refusalFresh: boolean): Promise<{ url: string; requests(): number }> {
  let requests = 0;
  const server = (origin = createServer((req, res) => {
    requests++;
    const refused = req.headers["x-api-version"] !== undefined;
    setTimeout(
      () => {
        const fresh = !refused || refusalFresh ? { "cache-control": "max-age=60" } : {};
        res.writeHead(refused ? 404 : 200, { ...fresh, "content-type": "text/plain" });
        res.end(refused ? "unknown version" : `page ${req.url}`);
      },
      refused ? 300 : 0,
    );
  }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests };
}

/** The attacker's request for `path`, and four victims' on the members while its fill waits on the origin. */
async function attackThenVictims(urls: string[], path: string) {
  const attack = send(urls[0]!, path, { headers: { "x-api-version": "9" } });
  // Real time for ordering only: the victims arrive while the attacker's fill waits on the origin.
  await new Promise((resolve) => setTimeout(resolve, 100));
  const victims = await Promise.all([0, 0, 1, 2].map((i) => send(urls[i % urls.length]!, path)));
  return { attack: await attack, victims };
}

describe.each(["node", "fleet"] as const)("an answer about one client's input stays that client's (%s)", (kind) => {
  it("visitors collapsed onto a fill the origin answered 404 for the attacker's X-Api-Version ask again together, and get the page", async () => {
    const o = await versionRefusingOrigin(true);
    deployment = await deploy(kind, o.url, {});
    const urls = deployment.urls;
    expect((await send(urls[0]!, "/home")).status).toBe(200);
    deployment.clock.advance(61_000);
    const { attack, victims } = await attackThenVictims(urls, "/home");
    expect(attack.status).toBe(404);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, "page /home"]);
    // The first fill, the attacker's, then one for every victim together.
    expect(o.requests()).toBe(3);
  });

  it("on a cold key: visitors collapsed onto a fill the origin answered 404 without freshness for the attacker's X-Api-Version get the page, never the attacker's 404", async () => {
    const o = await versionRefusingOrigin(false);
    deployment = await deploy(kind, o.url, {});
    const { attack, victims } = await attackThenVictims(deployment.urls, "/new");
    expect(attack.status).toBe(404);
    for (const victim of victims) expect([victim.status, victim.body]).toEqual([200, "page /new"]);
    expect(o.requests()).toBe(2);
  });
});

describe.each(["node", "fleet"] as const)("the breaker cannot be opened by one client's inputs (%s)", (kind) => {
  it("an attacker's header that makes the origin answer 503 on every path, sent on 8 paths, never opens the breaker: the victim's cold page is served", async () => {
    const o = await chokingOrigin();
    deployment = await deploy(kind, o.url, {});
    const urls = deployment.urls;
    for (let i = 0; i < 8; i++) {
      const attack = await send(urls[i % urls.length]!, `/page${i}`, { headers: { "x-debug": "1" } });
      expect([attack.status, attack.cacheStatus]).toEqual([
        503,
        "herdless; fwd=uri-miss; fwd-status=503; detail=origin-error",
      ]);
    }
    for (const url of urls) {
      const victim = await send(url, "/home");
      expect([victim.status, victim.body]).toEqual([200, "page /home"]);
    }
  });
});
