import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

let origin: Server | undefined;
let proxy: RunningServer | undefined;
let requests = 0;

/** An origin with one broken page (/broken answers 500, as an application bug would) and healthy others. */
async function start(): Promise<string> {
  requests = 0;
  origin = createServer((req, res) => {
    requests++;
    req.resume();
    if (req.url?.startsWith("/broken")) {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end("application bug");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=60" });
    res.end(`ok ${req.method} ${req.url}`);
  });
  await new Promise<void>((resolve) => origin!.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  const logger = jsonLogger("silent");
  // Sensitive settings: two sick calls would open it, if they came from two keys.
  const config = parseConfig({ origin: { url }, breaker: { failureThreshold: 2, minFailingKeys: 2 } });
  proxy = await startServer({ stack: localStack({ config, logger, clock: systemClock }), logger, port: 0 });
  return proxy.url;
}

function rawRequest(url: string, method: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

afterEach(async () => {
  await proxy?.close();
  await new Promise((resolve) => origin?.close(resolve));
});

describe("the breaker opens on a sick origin, not on one broken URL (Node)", () => {
  it("100 consecutive 500s from one URL and 100 TRACE / Expect requests leave every other URL and every POST served", async () => {
    const edge = await start();
    for (let i = 0; i < 100; i++) {
      const res = await fetch(`${edge}/broken`);
      await res.text();
      expect(res.status).toBe(500);
    }
    for (let i = 0; i < 50; i++) {
      // fetch cannot send TRACE; a raw client can.
      await rawRequest(`${edge}/page${i}`, "TRACE");
      const upload = await fetch(`${edge}/upload${i}`, {
        method: "POST",
        body: "x".repeat(100),
        headers: { expect: "100-continue" },
      }).catch(() => undefined);
      await upload?.text();
    }
    const refused: string[] = [];
    for (let i = 0; i < 20; i++) {
      const page = await fetch(`${edge}/other${i}`);
      if (page.status !== 200) refused.push(`GET /other${i}: ${page.status} ${page.headers.get("cache-status")}`);
      await page.text();
      const login = await fetch(`${edge}/login`, { method: "POST", body: "user=a" });
      if (login.status !== 200) refused.push(`POST /login: ${login.status} ${login.headers.get("cache-status")}`);
      await login.text();
    }
    expect(refused).toEqual([]);
    expect(requests).toBeGreaterThanOrEqual(100 + 20 + 20);
  });
});
