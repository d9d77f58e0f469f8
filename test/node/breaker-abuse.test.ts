import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { deploy, send, type Deployment } from "./deployment.ts";

/**
 * Opening the breaker on purpose: an attacker who finds one URL the origin fails on (an
 * expensive search its gateway answers 504 for) varies its query, so that every request is
 * a key of its own, past the per-key backoff and `breaker.minFailingKeys`.
 */
let origin: Server | undefined;
let deployment: Deployment | undefined;
afterEach(async () => {
  await deployment?.close();
  origin?.closeAllConnections();
  await new Promise((resolve) => (origin ? origin.close(resolve) : resolve(undefined)));
  origin = deployment = undefined;
});

async function searchFailingOrigin(): Promise<string> {
  const server = (origin = createServer((req, res) => {
    req.resume();
    // The framework routes /search however it is spelled; it times out behind the origin's gateway.
    if (req.url !== "/home") return void res.writeHead(504, { "content-type": "text/plain" }).end("gateway timeout");
    res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=60" }).end(`page ${req.url}`);
  }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe.each(["node", "fleet"] as const)("the breaker is not opened by one path's query variants (%s)", (kind) => {
  it("30 GETs and 30 POSTs of /search with a query of their own, spelled as frameworks route it, all 504, leave the victim's cold page served", async () => {
    deployment = await deploy(kind, await searchFailingOrigin(), {});
    const [url] = deployment.urls;
    const spellings = ["/search", "/Search/", "//search;jsessionid=1", "/%73earch", "/search//"];
    for (let i = 0; i < 30; i++) {
      const path = spellings[i % spellings.length]!;
      expect((await send(url!, `${path}?q=${i}`)).status).toBe(504);
      expect((await send(url!, `${path}?q=post${i}`, { method: "POST", body: "q" })).status).toBe(504);
    }
    const victim = await send(url!, "/home");
    expect([victim.status, victim.body]).toEqual([200, "page /home"]);
  });
});
