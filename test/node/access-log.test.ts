/**
 * The access log (`log.access`) an operator reads as nginx's access_log or varnishncsa: one
 * JSON line per request with its status and Cache-Status, whichever way herdless answered.
 */
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { createHandler } from "../../src/node/handler.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { localStack } from "../../src/node/stack.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function listening(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** herdless in front of an origin answering `max-age=60` pages, with its access lines captured. */
async function proxy(log: Record<string, unknown>) {
  const origin = await listening(
    createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=60" });
      // `/slow` sends its first bytes and then nothing until the test ends.
      if (req.url === "/slow") res.write("first bytes\n");
      else res.end("page\n");
    }),
  );
  const lines: Record<string, unknown>[] = [];
  const config = parseConfig({ origin: { url: origin }, log: { level: "silent", ...log } });
  const handler = createHandler({
    stack: localStack({ config, logger: jsonLogger("silent"), clock: new ManualClock() }),
    accessLog: (line) => void lines.push(JSON.parse(line) as Record<string, unknown>),
  });
  cleanup.push(() => handler.close());
  const url = await listening(createServer(handler));
  // A line is written once its answer has left: wait for the count asked for.
  const logged = async (count: number) => {
    for (let i = 0; i < 100 && lines.length < count; i++) await new Promise((resolve) => setImmediate(resolve));
    return lines;
  };
  return { url, logged };
}

describe("the Node access log", () => {
  it("writes one line per request: a miss, a hit, a HEAD, a relayed POST and a refused target", async () => {
    const { url, logged } = await proxy({ access: true });
    expect((await fetch(`${url}/page?a=1`)).status).toBe(200);
    expect((await fetch(`${url}/page?a=1`)).status).toBe(200);
    expect((await fetch(`${url}/page?a=1`, { method: "HEAD" })).status).toBe(200);
    expect((await fetch(`${url}/form`, { method: "POST", body: "x=1" })).status).toBe(200);
    expect((await fetch(`${url}/__herdless/stats`)).status).toBe(404);
    const lines = await logged(5);
    const host = new URL(url).host;
    expect(lines).toMatchObject([
      { msg: "request", method: "GET", target: "/page?a=1", host, status: 200, complete: true },
      { method: "GET", target: "/page?a=1", status: 200, cacheStatus: "herdless; hit", complete: true },
      { method: "HEAD", target: "/page?a=1", status: 200, cacheStatus: expect.stringMatching(/^herdless; hit/) },
      { method: "POST", target: "/form", status: 200, cacheStatus: expect.stringContaining("fwd=method") },
      { method: "GET", target: "/__herdless/stats", status: 404, cacheStatus: null },
    ]);
    expect(lines[0]!.cacheStatus).toMatch(/^herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored/);
    for (const line of lines) {
      expect(line.client).toBe("127.0.0.1");
      expect(typeof line.ms).toBe("number");
      expect(Date.parse(line.time as string)).not.toBeNaN();
    }
  });

  it("logs a request the handler refuses, with its 400", async () => {
    const { url, logged } = await proxy({ access: true });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${url}/`, { headers: { host: "a.test, b.test" } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(400);
    expect(await logged(1)).toMatchObject([{ status: 400, cacheStatus: expect.stringContaining("detail=refused") }]);
  });

  it("marks an answer the client left before its end as incomplete", async () => {
    const { url, logged } = await proxy({ access: true });
    await new Promise<void>((resolve, reject) => {
      // A relayed answer streams: its head leaves with the origin's first bytes.
      const req = request(`${url}/slow`, { method: "POST" }, (res) => {
        res.destroy();
        resolve();
      });
      req.on("error", reject);
      req.end();
    });
    expect(await logged(1)).toMatchObject([{ method: "POST", target: "/slow", status: 200, complete: false }]);
  });

  it("is off by default: no line at all", async () => {
    const { url, logged } = await proxy({});
    expect((await fetch(`${url}/page`)).status).toBe(200);
    expect(await logged(1)).toEqual([]);
  });
});
