import { Agent, createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig, type ConfigInput } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack, type Stack } from "../../src/node/stack.ts";

const logger = jsonLogger("silent");
const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function origin(options: Parameters<typeof startFragileOrigin>[0] = {}): Promise<FragileOrigin> {
  const started = await startFragileOrigin(options);
  cleanup.push(() => started.close());
  return started;
}

function stackFor(originUrl: string, clock: ManualClock, extra: Partial<ConfigInput> = {}): Stack {
  return localStack({ config: parseConfig({ ...extra, origin: { url: originUrl } }), logger, clock });
}

async function serve(stack: Stack, fastHits = true): Promise<RunningServer> {
  const running = await startServer({ stack, logger, port: 0, fastHits });
  cleanup.push(() => running.close());
  return running;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One request on a fresh connection (no pooling), so tests see exactly what the server sends. */
function send(
  url: string,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: Buffer; agent?: Agent } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${url}${path}`,
      { method: init.method ?? "GET", headers: init.headers, agent: init.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

function withoutDate(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const { date: _date, ...rest } = headers;
  return rest;
}

describe("the hit path", () => {
  it("answers a fresh hit with the same status, headers and bytes as the engine", async () => {
    const o = await origin({
      cacheControl: "max-age=60",
      extraHeaders: { "Cache-Status": "upstream; hit", Vary: "Accept-Language" },
    });
    const clock = new ManualClock(Date.now());
    const stack = stackFor(o.url, clock);
    const fast = await serve(stack, true);
    const engine = await serve(stack, false);
    const lang = { "accept-language": "fr", host: "example.test" };
    await send(fast.url, "/page?b=2&a=1", { headers: lang });
    clock.advance(7_300);
    const handle = vi.spyOn(stack.engine, "handle");
    for (const method of ["GET", "HEAD"]) {
      const viaFast = await send(fast.url, "/page?a=1&b=2", { method, headers: lang });
      expect(handle).not.toHaveBeenCalled();
      const viaEngine = await send(engine.url, "/page?a=1&b=2", { method, headers: lang });
      expect(handle).toHaveBeenCalledOnce();
      handle.mockClear();
      expect(withoutDate(viaFast.headers)).toEqual(withoutDate(viaEngine.headers));
      expect(viaFast.status).toBe(viaEngine.status);
      expect(viaFast.body.equals(viaEngine.body)).toBe(true);
      expect(viaFast.headers["cache-status"]).toBe("upstream; hit, herdless; hit; ttl=52");
      expect(viaFast.headers.age).toBe("7");
    }
    expect(stack.metrics.served.hit).toBe(4);
    expect(o.stats().requests).toBe(1);
  });

  it("serves a plain request's hit from what it kept only until Age moves, a purge lands or the entry nears expiry", async () => {
    const o = await origin({ cacheControl: "max-age=10" });
    const clock = new ManualClock(Date.now());
    const stack = stackFor(o.url, clock, { defaults: { refreshAhead: 0.2 } });
    const running = await serve(stack);
    const host = { host: "example.test" };
    const first = await send(running.url, "/plain", { headers: host });
    const handle = vi.spyOn(stack.engine, "handle");
    const hit = async (advanceMs: number) => {
      clock.advance(advanceMs);
      return send(running.url, "/plain", { headers: host });
    };
    const a = await hit(1_500);
    const b = await hit(1_000);
    expect([a.headers.age, a.headers["cache-status"]]).toEqual(["1", "herdless; hit; ttl=8"]);
    expect([b.headers.age, b.headers["cache-status"]]).toEqual(["2", "herdless; hit; ttl=7"]);
    expect(b.body.equals(first.body)).toBe(true);
    const head = await send(running.url, "/plain", { method: "HEAD", headers: host });
    expect([head.headers["content-length"], head.body.byteLength]).toEqual([String(first.body.byteLength), 0]);
    // Requests the engine must answer: a precondition (304), a Range (206), a cookie (not shared).
    const etag = String(first.headers.etag);
    expect((await send(running.url, "/plain", { headers: { ...host, "if-none-match": etag } })).status).toBe(304);
    expect((await send(running.url, "/plain", { headers: { ...host, range: "bytes=0-3" } })).status).toBe(206);
    const cookie = await send(running.url, "/plain", { headers: { ...host, cookie: "s=1" } });
    expect(cookie.headers["cache-status"]).toContain("fwd=bypass");
    expect(handle).toHaveBeenCalledTimes(3);
    expect(o.stats().requests).toBe(2);
    // A purge lands between two hits: the next request is not answered from the kept copy.
    await stack.purges.purge({ urls: ["http://example.test/plain"] });
    // (The registry waits for its clock to pass the purge's instant; this one moves by hand.)
    const purged = await hit(1);
    expect(purged.headers["cache-status"]).toContain("fwd=");
    expect(o.stats().requests).toBe(3);
    expect((await hit(1_000)).headers["cache-status"]).toBe("herdless; hit; ttl=9");
    // The new copy, in its last 20 %: the engine answers and renews it behind the hit.
    const ahead = await hit(7_500);
    expect(ahead.headers["cache-status"]).toBe("herdless; hit; ttl=1; detail=refresh-ahead");
    expect(handle).toHaveBeenCalledTimes(5);
  });

  it("leaves stale entries, other variants and credentialed requests to the engine", async () => {
    const o = await origin({
      cacheControl: "max-age=10, stale-while-revalidate=30",
      extraHeaders: { Vary: "Accept-Language" },
    });
    const clock = new ManualClock(Date.now());
    const running = await serve(stackFor(o.url, clock));
    await send(running.url, "/v", { headers: { "accept-language": "fr" } });
    const other = await send(running.url, "/v", { headers: { "accept-language": "de" } });
    expect(other.headers["cache-status"]).toContain("fwd=vary-miss");
    const credentialed = await send(running.url, "/v", {
      headers: { "accept-language": "fr", authorization: "Bearer x" },
    });
    // RFC 9111 §3.5: its own answer from the origin, never the stored copy.
    expect(credentialed.headers["cache-status"]).toContain("fwd=request");
    clock.advance(12_000);
    const stale = await send(running.url, "/v", { headers: { "accept-language": "fr" } });
    expect(stale.headers["cache-status"]).toBe("herdless; hit; ttl=-2; detail=stale-while-revalidate");
  });

  it("shows its hits in the stats and metrics exactly, read mid-second, after the second changed and after a refill", async () => {
    const o = await origin({ cacheControl: "max-age=10" });
    // 200 ms into a second, so the test knows which second each hit falls in.
    const clock = new ManualClock(Math.floor(Date.now() / 1000) * 1000 + 200);
    const token = "t".repeat(32);
    const stack = stackFor(o.url, clock, { admin: { token } });
    const running = await serve(stack);
    const host = { host: "example.test" };
    const stats = async () => {
      const answer = await send(running.url, "/__herdless/stats", { headers: { authorization: `Bearer ${token}` } });
      return JSON.parse(answer.body.toString()) as {
        served: Record<string, number>;
        topKeys: { key: string; requests: number }[];
        series: { at: number; served: Record<string, number> }[];
      };
    };
    const hitsTotal = async () => {
      const text = (await send(running.url, "/__herdless/metrics")).body.toString();
      return Number(/^herdless_requests_total\{result="hit"\} (\d+)$/m.exec(text)?.[1]);
    };
    const handle = vi.spyOn(stack.engine, "handle");
    const hits = async (path: string, n: number) => {
      for (let i = 0; i < n; i++)
        expect((await send(running.url, path, { headers: host })).headers["cache-status"]).toMatch(/^herdless; hit/);
    };
    await send(running.url, "/a", { headers: host });
    await send(running.url, "/b", { headers: host });
    handle.mockClear();
    await hits("/a", 3);
    await hits("/b", 1);
    // Mid-second: the metrics endpoint, then the stats.
    expect(await hitsTotal()).toBe(4);
    let seen = await stats();
    expect(seen.served.hit).toBe(4);
    expect(seen.series.map((s) => s.served)).toEqual([{ miss: 2, hit: 4 }]);
    expect(seen.topKeys.map((k) => k.requests)).toEqual([4, 2]);
    await hits("/a", 1);
    // The next second: its hits are its own.
    clock.advance(1_000);
    await hits("/b", 2);
    seen = await stats();
    expect(seen.series.map((s) => s.served)).toEqual([{ miss: 2, hit: 5 }, { hit: 2 }]);
    expect(seen.topKeys.map((k) => k.requests)).toEqual([5, 4]);
    // /a expires and is filled again (a new entry): its hits before and after add up.
    await hits("/a", 1);
    clock.advance(10_000);
    expect((await send(running.url, "/a", { headers: host })).headers["cache-status"]).toContain("fwd=stale");
    await hits("/a", 2);
    seen = await stats();
    expect(seen.served).toMatchObject({ hit: 10, miss: 3 });
    expect(seen.series.map((s) => s.served)).toEqual([{ miss: 2, hit: 5 }, { hit: 3 }, { miss: 1, hit: 2 }]);
    expect(seen.topKeys.map((k) => k.requests)).toEqual([9, 4]);
    expect(await hitsTotal()).toBe(10);
    expect(handle).toHaveBeenCalledOnce();
  });
});

describe("the proxy", () => {
  it("streams a body larger than cache.maxEntryBytes to the client complete, and stores nothing", async () => {
    const o = await origin({ cacheControl: "max-age=60" });
    const stack = stackFor(o.url, new ManualClock(Date.now()), { cache: { maxEntryBytes: 64 * 1024 } });
    const running = await serve(stack);
    const bytes = 3 * 1024 * 1024 + 7;
    const direct = await send(o.url, `/big?bytes=${bytes}`);
    const proxied = await send(running.url, `/big?bytes=${bytes}`);
    expect(proxied.status).toBe(200);
    expect(proxied.body.byteLength).toBe(bytes);
    expect(proxied.body.equals(direct.body)).toBe(true);
    expect(proxied.headers["cache-status"]).toContain("detail=too-large");
    expect(stack.near.size).toBe(0);
  });

  it("relays POST bodies to the origin and returns its answer", async () => {
    const received: { method: string; body: string }[] = [];
    const echo = await echoOrigin((method, body) => received.push({ method, body }));
    const running = await serve(stackFor(echo, new ManualClock(Date.now())));
    const payload = Buffer.from(JSON.stringify({ hello: "world", n: "x".repeat(100_000) }));
    const res = await send(running.url, "/submit", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: payload,
    });
    expect(res.status).toBe(201);
    expect(res.body.equals(payload)).toBe(true);
    expect(received).toEqual([{ method: "POST", body: payload.toString() }]);
    expect(res.headers["cache-status"]).toContain("fwd=method");
  });

  it("answers HEAD from the GET entry: headers and length, no body", async () => {
    const o = await origin({ cacheControl: "max-age=60", bodyBytes: 500 });
    const running = await serve(stackFor(o.url, new ManualClock(Date.now())));
    const cold = await send(running.url, "/h", { method: "HEAD" });
    expect(cold.status).toBe(200);
    expect(cold.body.byteLength).toBe(0);
    expect(cold.headers["content-length"]).toBe("500");
    const hit = await send(running.url, "/h", { method: "HEAD" });
    expect(hit.headers["cache-status"]).toMatch(/^herdless; hit; ttl=\d+$/);
    expect(hit.body.byteLength).toBe(0);
    const get = await send(running.url, "/h");
    expect(get.body.byteLength).toBe(500);
    expect(o.stats().requests).toBe(1);
  });
});

describe("the listening address", () => {
  it("names an IPv6 host bracketed, so the URL it reports reaches the server", async () => {
    const up = await origin();
    const clock = new ManualClock();
    const running = await startServer({ stack: stackFor(up.url, clock), logger, port: 0, host: "::1" });
    cleanup.push(() => running.close());
    expect(running.url).toBe(`http://[::1]:${running.port}`);
    expect((await send(running.url, "/", { headers: { host: "shop.test" } })).status).toBe(200);
  });
});

describe("graceful shutdown", () => {
  it("finishes a slow in-flight request after close() starts and refuses new connections", async () => {
    const o = await origin({ cacheControl: "max-age=60", latencyMs: 300 });
    const running = await serve(stackFor(o.url, new ManualClock(Date.now())));
    // A keep-alive client: its connection must be closed once the answer is out, not held for keepAliveTimeout.
    const agent = new Agent({ keepAlive: true });
    cleanup.push(async () => agent.destroy());
    await send(running.url, "/warm", { agent });
    const slow = send(running.url, "/slow", { agent });
    for (let i = 0; i < 200 && o.stats().inFlight === 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(o.stats().inFlight).toBe(1);
    const closed = running.close();
    await expect(connectable(running.port)).resolves.toBe(false);
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toMatch(/^v1 \/slow /);
    await closed;
    expect(running.server.listening).toBe(false);
  });
});

/** True when a TCP connection to the port is accepted. */
function connectable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** An origin that answers 201 with the request body it read. */
async function echoOrigin(onRequest: (method: string, body: string) => void): Promise<string> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      onRequest(req.method ?? "", body.toString());
      res.writeHead(201, {
        "content-type": req.headers["content-type"] ?? "application/octet-stream",
        "content-length": String(body.byteLength),
      });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
