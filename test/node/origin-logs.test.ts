/**
 * What an operator reads in the Node server's log when the origin fails: one warn line per
 * origin call that got no answer or a 5xx, naming the key and the reason, as nginx's error
 * log names each upstream that failed.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** An origin answering `status` to every request, and a close() that stops it listening. */
async function origin(status: number) {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(status, { "content-type": "text/plain" }).end(`answer ${status}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close };
}

async function proxyLogging(originUrl: string) {
  const lines: Record<string, unknown>[] = [];
  const logger = jsonLogger("info", (line) => void lines.push(JSON.parse(line) as Record<string, unknown>));
  const stack = localStack({ config: parseConfig({ origin: { url: originUrl } }), logger, clock: new ManualClock() });
  const running = await startServer({ stack, logger, port: 0 });
  cleanup.push(() => running.close());
  const warnings = () => lines.filter((line) => line.level === "warn");
  return { url: running.url, warnings };
}

describe("the Node server logs each failed origin call", () => {
  it("a refused connection: one warn line with the key and the reason, for a fill and for a relay", async () => {
    const gone = await origin(200);
    await gone.close();
    const proxy = await proxyLogging(gone.url);
    expect((await fetch(`${proxy.url}/page`)).status).toBe(502);
    expect((await fetch(`${proxy.url}/form`, { method: "POST", body: "a=1" })).status).toBe(502);
    const host = new URL(proxy.url).host;
    expect(proxy.warnings()).toMatchObject([
      { msg: "origin call failed", key: `GET http://${host}/page`, error: expect.stringContaining("ECONNREFUSED") },
      { msg: "origin call failed", key: `POST ${gone.url}/form`, error: expect.stringContaining("ECONNREFUSED") },
    ]);
  });

  it("a 503 from the origin is a warn line with its status; a 200 and a 404 log nothing", async () => {
    const sick = await origin(503);
    cleanup.push(sick.close);
    const proxy = await proxyLogging(sick.url);
    expect((await fetch(`${proxy.url}/page`)).status).toBe(503);
    expect(proxy.warnings()).toEqual([
      expect.objectContaining({
        msg: "origin answered an error",
        key: `GET http://${new URL(proxy.url).host}/page`,
        status: 503,
      }),
    ]);
    const fine = await origin(404);
    cleanup.push(fine.close);
    const quiet = await proxyLogging(fine.url);
    expect((await fetch(`${quiet.url}/missing`)).status).toBe(404);
    expect(quiet.warnings()).toEqual([]);
  });
});
