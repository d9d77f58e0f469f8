import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, servingOrigin } from "./attack-kit.ts";

/**
 * What herdless's own answers tell any client about the origin: an attacker who makes the
 * origin fail (a path it answers badly, a header it stalls on) reads the error page to
 * learn where the origin listens, then sends their flood there, around the cache, its cap
 * and its breaker. The Worker's twin is test/cloudflare/security-disclosure.test.ts.
 */

const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const one of cleanup.splice(0).reverse()) await one();
});

/** A free port on 127.0.0.1 that nothing listens on: an origin that is down. */
async function deadPort(): Promise<number> {
  const free = createServer();
  await new Promise<void>((resolve) => free.listen(0, "127.0.0.1", resolve));
  const { port } = free.address() as AddressInfo;
  await new Promise<void>((resolve) => free.close(() => resolve()));
  return port;
}

describe("error pages never name the origin's address (Node)", () => {
  it("a status no client can be given, a malformed answer, a body cut short, a stall and a closed connection: each a 5xx naming the fault and the path, never the origin's host or port", async () => {
    const originUrl = await servingOrigin((req, res) => {
      const path = req.url ?? "";
      if (path.startsWith("/status600")) res.writeHead(600).end("?");
      else if (path.startsWith("/malformed")) res.socket?.end("HTTP/1.1 200 OK\r\nX Bad: 1\r\n\r\n");
      else if (path.startsWith("/cut")) {
        res.writeHead(200, { "content-length": "10", "cache-control": "max-age=60" });
        res.write("ab", () => res.destroy());
      } else if (path.startsWith("/closed")) res.socket?.destroy();
      else if (!path.startsWith("/stall")) res.writeHead(200, { "cache-control": "max-age=60" }).end("ok");
    }, cleanup);
    const cache = await herdless(originUrl, { origin: { timeoutMs: 300 } });
    cleanup.push(() => cache.close());
    const { host, port } = new URL(originUrl);
    for (const [method, path] of [
      ["GET", "/status600"],
      ["GET", "/malformed"],
      ["GET", "/cut"],
      ["GET", "/stall"],
      ["GET", "/closed"],
      // A relayed request (an unsafe method) fails by another road.
      ["POST", "/closed?form"],
    ] as const) {
      const attack = await get(
        cache.base,
        path,
        method === "POST" ? { method, body: "x", headers: { "content-length": "1" } } : {},
      );
      expect(attack.status, path).toBeGreaterThanOrEqual(502);
      expect(attack.body, path).toContain(path.split("?")[0]);
      expect(attack.body, path).not.toContain(host);
      expect(attack.body, path).not.toContain(port);
    }
    // The page itself is still served: nothing above was stored or broke the key.
    expect((await get(cache.base, "/ok")).status).toBe(200);
  });

  it("an origin that is down: the 502 names the refused connection, not the address it was refused at", async () => {
    const port = String(await deadPort());
    const cache = await herdless(`http://127.0.0.1:${port}/app`);
    cleanup.push(() => cache.close());
    for (const method of ["GET", "POST"]) {
      const attack = await get(
        cache.base,
        "/p",
        method === "POST" ? { method, body: "x", headers: { "content-length": "1" } } : {},
      );
      expect(attack.status, method).toBe(502);
      expect(attack.body, method).toContain("ECONNREFUSED");
      expect(attack.body, method).toContain("/app/p");
      expect(attack.body, method).not.toContain("127.0.0.1");
      expect(attack.body, method).not.toContain(port);
    }
  });
});

describe("redirects the origin builds from the Host it is sent never name its address (Node)", () => {
  it("a 302 stored for everyone, its 304 refresh and a relayed POST's 303 send the visitor to the host it asked, under origin.url's path", async () => {
    let refreshed = false;
    let carts = 0;
    // An application behind origin.url `/app` that builds absolute links from Host, sent
    // origin.url's own (origin.hostHeader: origin, the default).
    const originUrl = await servingOrigin((req, res) => {
      const own = `http://${req.headers.host}`;
      const path = req.url ?? "";
      if (path === "/app/account" && req.headers["if-none-match"] === '"a"') {
        refreshed = true;
        res.writeHead(304, { etag: '"a"', "cache-control": "max-age=60", "content-location": `${own}/app/me#top` });
        res.end();
      } else if (path === "/app/account")
        res
          .writeHead(302, {
            location: `${own}/app/login?next=%2Faccount`,
            "content-location": `${own}/app/account.html`,
            etag: '"a"',
            "cache-control": "max-age=60",
          })
          .end("moved");
      else if (path === "/app/cart") res.writeHead(303, { location: `${own}/app/cart/1` }).end();
      else if (path === "/app/cart/1") res.writeHead(200, { "cache-control": "max-age=60" }).end(`cart #${++carts}`);
      // Other hosts, and the origin's own paths outside origin.url's, are not herdless's to name.
      else if (path === "/app/away")
        res.writeHead(302, { location: `${own}/application`, "cache-control": "max-age=60" }).end();
      else res.writeHead(302, { location: "http://elsewhere.test/x", "cache-control": "max-age=60" }).end();
    }, cleanup);
    const cache = await herdless(`${originUrl}/app`);
    cleanup.push(() => cache.close());
    const { host } = new URL(originUrl);

    const first = await get(cache.base, "/account");
    expect(first.status).toBe(302);
    expect(first.headers["location"]).toBe("http://shop.test/login?next=%2Faccount");
    expect(first.headers["content-location"]).toBe("http://shop.test/account.html");
    // The next visitor gets the stored copy: the same, not the origin's address.
    const second = await get(cache.base, "/account");
    expect(second.headers["cache-status"]).toContain("hit");
    expect(second.headers["location"]).toBe("http://shop.test/login?next=%2Faccount");
    expect(second.text).not.toContain(host);

    // Stale: the 304 that refreshes it names the origin again; what it adds is rewritten too.
    cache.clock.advance(61_000);
    const third = await get(cache.base, "/account");
    expect(refreshed).toBe(true);
    expect(third.headers["location"]).toBe("http://shop.test/login?next=%2Faccount");
    expect(third.headers["content-location"]).toBe("http://shop.test/me#top");
    expect((await get(cache.base, "/account")).text).not.toContain(host);

    expect((await get(cache.base, "/cart/1")).body).toBe("cart #1");
    const posted = await get(cache.base, "/cart", { method: "POST", body: "x", headers: { "content-length": "1" } });
    expect(posted.status).toBe(303);
    expect(posted.headers["location"]).toBe("http://shop.test/cart/1");
    // RFC 9111 §4.4: the page it names is on the client's origin now, so the POST invalidated it.
    expect((await get(cache.base, "/cart/1")).body).toBe("cart #2");

    expect((await get(cache.base, "/away")).headers["location"]).toBe(`${originUrl}/application`);
    expect((await get(cache.base, "/other")).headers["location"]).toBe("http://elsewhere.test/x");
  });

  it("origin.rewriteRedirects: false passes Location on as the origin sent it", async () => {
    const originUrl = await servingOrigin((req, res) => {
      res.writeHead(302, { location: `http://${req.headers.host}/login` }).end();
    }, cleanup);
    const cache = await herdless(originUrl, { origin: { rewriteRedirects: false } });
    cleanup.push(() => cache.close());
    expect((await get(cache.base, "/account")).headers["location"]).toBe(`${originUrl}/login`);
  });
});
