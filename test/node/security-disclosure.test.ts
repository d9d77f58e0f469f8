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
