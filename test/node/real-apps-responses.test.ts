/**
 * What real applications answer, behind herdless on Node (one process and a Redis fleet):
 * nothing one visitor's request made of the answer reaches another visitor. Each test is the
 * first (or the attacker's) request, then the victim's. The Worker twin is
 * test/cloudflare/edge-real-apps-responses.test.ts.
 */
import type { RequestListener } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { servingOrigin } from "./attack-kit.ts";
import { deploy, send, type Deployment } from "./deployment.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});

async function site(kind: "node" | "fleet", handler: RequestListener): Promise<Deployment> {
  const origin = await servingOrigin(handler, cleanup);
  const deployment = await deploy(kind, origin, {});
  cleanup.push(() => deployment.close());
  return deployment;
}

describe.each(["node", "fleet"] as const)("CORS granted by reflecting Origin, without Vary: Origin (%s)", (kind) => {
  it("an attacker's Origin is never the one a visitor's copy grants", async () => {
    let requests = 0;
    // nginx's `add_header Access-Control-Allow-Origin $http_origin always;` in front of an API.
    const { urls } = await site(kind, (req, res) => {
      requests++;
      const origin = req.headers.origin;
      const cors = origin ? { "access-control-allow-origin": origin, "access-control-allow-credentials": "true" } : {};
      res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=60", ...cors });
      res.end(`{"n":${requests}}`);
    });
    const attacker = await send(urls[0]!, "/api/items", { headers: { origin: "https://evil.test" } });
    expect(attacker.headers["access-control-allow-origin"]).toBe("https://evil.test");
    const app = { origin: "https://app.shop.test" };
    const victim = await send(urls.at(-1)!, "/api/items", { headers: app });
    expect(victim.status).toBe(200);
    expect(victim.headers["access-control-allow-origin"]).toBe("https://app.shop.test");
    const visitor = await send(urls.at(-1)!, "/api/items");
    expect(visitor.headers["access-control-allow-origin"]).toBeUndefined();
    // Each origin's copy is still shared by everyone who asks from it.
    const again = await send(urls[0]!, "/api/items", { headers: app });
    expect(again.headers["access-control-allow-origin"]).toBe("https://app.shop.test");
    expect(again.cacheStatus).toMatch(/hit/);
    expect(requests).toBe(3);
  });

  it("`Access-Control-Allow-Origin: *` keeps one copy for every origin", async () => {
    let requests = 0;
    const { urls } = await site(kind, (_req, res) => {
      requests++;
      res.writeHead(200, { "cache-control": "max-age=60", "access-control-allow-origin": "*" }).end("font");
    });
    await send(urls[0]!, "/font.woff2", { headers: { origin: "https://a.test" } });
    const other = await send(urls.at(-1)!, "/font.woff2", { headers: { origin: "https://b.test" } });
    expect(other.cacheStatus).toMatch(/hit/);
    expect(requests).toBe(1);
  });
});
