/**
 * How the Node server answers clients from what it holds, end to end through the real
 * server (fast hit path included): conditional requests, Range, request Cache-Control,
 * invalidation by unsafe methods, interim and out-of-range origin statuses, TRACE.
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig, type ConfigInput } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

const logger = jsonLogger("silent");
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const LAST_MODIFIED = "Tue, 01 Jan 2030 00:00:00 GMT";

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

/** An origin whose answer per request the test scripts; `seen` records what reached it. */
async function scriptedOrigin(answer: (req: Seen, res: ServerResponse, n: number) => void) {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const record = { method: req.method ?? "", url: req.url ?? "", headers: req.headers };
    seen.push(record);
    req.resume();
    req.on("end", () => answer(record, res, seen.length));
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** A cacheable page with validators; body `v<n> <path>` padded to 100 bytes. */
function page(req: Seen, res: ServerResponse, n: number, extra: Record<string, string> = {}): void {
  const etag = '"v1"';
  const headers = { etag, "last-modified": LAST_MODIFIED, "cache-control": "max-age=60", ...extra };
  if (req.headers["if-none-match"] === etag) return void res.writeHead(304, headers).end();
  res.writeHead(200, { ...headers, "content-type": "text/plain" }).end(`v${n} ${req.url}`.padEnd(100, "."));
}

async function proxyFor(originUrl: string, extra: Partial<ConfigInput> = {}, startAt = Date.now()) {
  const clock = new ManualClock(startAt);
  const stack = localStack({
    config: parseConfig({ ...extra, origin: { ...extra.origin, url: originUrl } }),
    logger,
    clock,
  });
  const running = await startServer({ stack, logger, port: 0 });
  cleanup.push(() => running.close());
  return { url: running.url, clock };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A raw field list (`[name, value, …]`) may repeat a field; node:http adds no Host to one. */
function send(
  url: string,
  path: string,
  fields: Record<string, string> | string[] = {},
  method = "GET",
): Promise<Answer> {
  const headers = Array.isArray(fields) ? ["Host", new URL(url).host, ...fields] : fields;
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(method === "POST" || method === "PUT" ? "payload" : undefined);
  });
}

describe("RFC 9111 §4.3.2 on Node: client conditional requests answered from the cache", () => {
  it("If-None-Match / If-Modified-Since → 304 with validators and no body, from a warm cache, origin untouched", async () => {
    const origin = await scriptedOrigin((req, res, n) => page(req, res, n));
    const proxy = await proxyFor(origin.url);
    expect((await send(proxy.url, "/a")).status).toBe(200);
    const inm = await send(proxy.url, "/a", { "if-none-match": 'W/"v1"' });
    expect(inm.status).toBe(304);
    expect(inm.body).toBe("");
    expect(inm.headers.etag).toBe('"v1"');
    expect(inm.headers["content-type"]).toBeUndefined();
    expect(inm.headers["cache-status"]).toMatch(/^herdless; hit/);
    const ims = await send(proxy.url, "/a", { "if-modified-since": LAST_MODIFIED });
    expect(ims.status).toBe(304);
    const changed = await send(proxy.url, "/a", { "if-none-match": '"v0"' });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatch(/^v1 \/a/);
    expect((await send(proxy.url, "/a", { "if-match": '"v0"' })).status).toBe(412);
    expect(origin.seen).toHaveLength(1);
  });
});

describe("RFC 9110 §13.1.3, §13.1.4 on Node: a date precondition of more than one member is ignored", () => {
  it("two If-Modified-Since fields get the page, two If-Unmodified-Since fields no 412 (node:http keeps the first of each)", async () => {
    const origin = await scriptedOrigin((req, res, n) => page(req, res, n));
    const proxy = await proxyFor(origin.url);
    expect((await send(proxy.url, "/a")).status).toBe(200);
    const later = "Wed, 01 Jan 2031 00:00:00 GMT";
    // Each alone would be a 304; as a list of two members the field is not a valid HTTP-date.
    const twice = await send(proxy.url, "/a", ["If-Modified-Since", later, "If-Modified-Since", later]);
    expect(twice.status).toBe(200);
    expect(twice.body).toMatch(/^v1 \/a/);
    const earlier = "Mon, 01 Jan 2029 00:00:00 GMT";
    expect((await send(proxy.url, "/a", ["If-Unmodified-Since", earlier])).status).toBe(412);
    expect((await send(proxy.url, "/a", ["If-Unmodified-Since", earlier, "If-Unmodified-Since", earlier])).status).toBe(
      200,
    );
    expect(origin.seen).toHaveLength(1);
  });
});

describe("RFC 9110 §15.4.5 on Node: a 304 made from the cache carries what the origin's own 304 carries", () => {
  it("a page's cross-origin fetch() with its own If-None-Match gets Access-Control-Allow-Origin, Link and the rest, not the body's metadata", async () => {
    const api = {
      "access-control-allow-origin": "https://app.example",
      "access-control-expose-headers": "ETag",
      vary: "Origin",
      link: "</next>; rel=next",
      "x-total": "42",
      "content-language": "en",
    };
    const origin = await scriptedOrigin((req, res, n) => page(req, res, n, api));
    const proxy = await proxyFor(origin.url);
    const asks = { origin: "https://app.example", "if-none-match": '"v1"' };
    const direct = await send(origin.url, "/api/items", asks);
    expect((await send(proxy.url, "/api/items", { origin: "https://app.example" })).status).toBe(200);
    const cached = await send(proxy.url, "/api/items", asks);
    expect([direct.status, cached.status, cached.headers["cache-status"]]).toEqual([304, 304, "herdless; hit; ttl=60"]);
    // What the browser's CORS check and the page read on the 304 are there, as from the origin.
    for (const name of ["access-control-allow-origin", "access-control-expose-headers", "vary", "link", "x-total"])
      expect([name, cached.headers[name]]).toEqual([name, direct.headers[name]]);
    // The body's own metadata is not (§15.4.5), nor a body.
    expect([cached.headers["content-type"], cached.headers["content-language"], cached.body]).toEqual([
      undefined,
      undefined,
      "",
    ]);
    expect(origin.seen).toHaveLength(2);
  });
});

describe("RFC 9211 on Node: Cache-Status of requests collapsed onto one fill", () => {
  it("of 5 concurrent requests for a cold page, the one that fetched says `stored`; the 4 that waited say `collapsed`, not `stored`, as on the Worker", async () => {
    const held: (() => void)[] = [];
    const origin = await scriptedOrigin((req, res, n) => held.push(() => page(req, res, n)));
    const proxy = await proxyFor(origin.url);
    const answers = Promise.all(Array.from({ length: 5 }, () => send(proxy.url, "/cold")));
    while (held.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    // Let the other four reach the fill in flight before the origin answers.
    await new Promise((resolve) => setTimeout(resolve, 100));
    held.splice(0).forEach((answer) => answer());
    const statuses = (await answers).map((a) => String(a.headers["cache-status"])).sort();
    expect(origin.seen).toHaveLength(1);
    expect(statuses).toEqual([
      ...Array.from({ length: 4 }, () => "herdless; fwd=uri-miss; fwd-status=200; ttl=60; collapsed"),
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
    ]);
  });
});

describe("RFC 9211 §2.6 on Node: the waiters of a fetch that failed say `collapsed` too", () => {
  /** Five concurrent requests for `path`; the origin hears the first only once `more` are waiting. */
  async function fiveOnOneFetch(proxyUrl: string, path: string, held: (() => void)[]) {
    const answers = Promise.all(Array.from({ length: 5 }, () => send(proxyUrl, path)));
    while (held.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    // Let the other four reach the fill in flight before the origin answers.
    await new Promise((resolve) => setTimeout(resolve, 100));
    held.splice(0).forEach((answer) => answer());
    return (await answers).map((a) => `${a.status} ${String(a.headers["cache-status"])}`).sort();
  }

  it("a 503 without freshness, a reset connection, a timeout, and a failed revalidation stale-if-error hides: one origin request each, 4 of 5 `collapsed`", async () => {
    const held: (() => void)[] = [];
    let stalled = 0;
    const origin = await scriptedOrigin((req, res, n) => {
      if (req.url === "/stalls") return void stalled++;
      const answer = () => {
        if (req.url === "/503") return void res.writeHead(503, { "content-type": "text/plain" }).end("busy");
        if (req.url === "/reset" || n > 4) return void res.socket?.destroy();
        page(req, res, n, { "cache-control": "max-age=60, stale-if-error=600" });
      };
      held.push(answer);
    });
    const proxy = await proxyFor(origin.url, { origin: { url: origin.url, timeoutMs: 300 } });
    const four = (line: string) => Array.from({ length: 4 }, () => line);
    expect(await fiveOnOneFetch(proxy.url, "/503", held)).toEqual([
      ...four("503 herdless; fwd=uri-miss; fwd-status=503; collapsed; detail=origin-error"),
      "503 herdless; fwd=uri-miss; fwd-status=503; detail=origin-error",
    ]);
    expect(await fiveOnOneFetch(proxy.url, "/reset", held)).toEqual([
      ...four("502 herdless; fwd=uri-miss; collapsed; detail=origin-error"),
      "502 herdless; fwd=uri-miss; detail=origin-error",
    ]);
    const timedOut = Promise.all(Array.from({ length: 5 }, () => send(proxy.url, "/stalls")));
    expect((await timedOut).map((a) => `${a.status} ${String(a.headers["cache-status"])}`).sort()).toEqual([
      ...four("504 herdless; fwd=uri-miss; collapsed; detail=origin-error"),
      "504 herdless; fwd=uri-miss; detail=origin-error",
    ]);
    expect(stalled).toBe(1);
    // Stored, then past its max-age: the revalidation's connection is reset, the copy stands in.
    expect((await fiveOnOneFetch(proxy.url, "/kept", held)).filter((a) => a.startsWith("200"))).toHaveLength(5);
    proxy.clock.advance(61_000);
    expect(await fiveOnOneFetch(proxy.url, "/kept", held)).toEqual([
      ...four("200 herdless; fwd=stale; ttl=-1; collapsed; detail=stale-if-error"),
      "200 herdless; fwd=stale; ttl=-1; detail=stale-if-error",
    ]);
    expect(origin.seen.map((r) => r.url)).toEqual(["/503", "/reset", "/stalls", "/kept", "/kept"]);
  });
});

describe("RFC 9111 §4.3.2 on Node: a cold key whose body streams", () => {
  it("If-None-Match matching the new ETag → 304 with no body, as from a stored copy; the body is still stored", async () => {
    const big = "x".repeat(200_000);
    const origin = await scriptedOrigin((_req, res) =>
      res.writeHead(200, { etag: '"v1"', "cache-control": "max-age=60", "content-type": "text/plain" }).end(big),
    );
    const proxy = await proxyFor(origin.url);
    const inm = await send(proxy.url, "/big", { "if-none-match": '"v1"' });
    expect([inm.status, inm.body, inm.headers.etag]).toEqual([304, "", '"v1"']);
    expect(inm.headers["content-length"]).toBeUndefined();
    expect(inm.headers["cache-status"]).toMatch(/fwd=uri-miss; fwd-status=200/);
    // The one fetch goes on without the 304's reader: the body is stored whole.
    await vi.waitFor(async () =>
      expect((await send(proxy.url, "/big")).headers["cache-status"]).toMatch(/^herdless; hit/),
    );
    const full = await send(proxy.url, "/big");
    expect([full.status, full.body]).toEqual([200, big]);
    expect(origin.seen).toHaveLength(1);
  });
});

describe("RFC 9110 §14 on Node: Range from the stored full response", () => {
  it("206 / suffix / 416 / If-Range; one unconditional, unranged origin request", async () => {
    const origin = await scriptedOrigin((req, res, n) => page(req, res, n));
    const proxy = await proxyFor(origin.url);
    const part = await send(proxy.url, "/r", { range: "bytes=0-1" });
    expect(part.status).toBe(206);
    expect(part.body).toBe("v1");
    expect(part.headers["content-range"]).toBe("bytes 0-1/100");
    expect(part.headers["content-length"]).toBe("2");
    expect((await send(proxy.url, "/r", { range: "bytes=-3" })).body).toBe("...");
    const past = await send(proxy.url, "/r", { range: "bytes=100-" });
    expect(past.status).toBe(416);
    expect(past.headers["content-range"]).toBe("bytes */100");
    expect((await send(proxy.url, "/r", { range: "bytes=0-1", "if-range": '"v0"' })).status).toBe(200);
    expect((await send(proxy.url, "/r", { range: "bytes=0-1,5-6" })).status).toBe(200);
    expect((await send(proxy.url, "/r")).body).toHaveLength(100);
    expect(origin.seen).toHaveLength(1);
    expect(origin.seen[0]!.headers.range).toBeUndefined();
  });
});

/** A video of 200,003 bytes (byte i is a letter: `a` + i mod 26), as a media server sends it. */
const VIDEO = Array.from({ length: 200_003 }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");

/** Answers with VIDEO; a single `bytes=a-` or `bytes=a-b` Range gets its 206 unless `ranges` is false. */
function video(req: Seen, res: ServerResponse, headers: Record<string, string>, ranges = true): void {
  const all = { "content-type": "video/mp4", "accept-ranges": "bytes", ...headers };
  const range = /^bytes=(\d+)-(\d*)$/.exec(String(req.headers.range ?? ""));
  if (!ranges || !range) return void res.writeHead(200, { ...all, "content-length": VIDEO.length }).end(VIDEO);
  const start = Number(range[1]);
  const end = range[2] ? Number(range[2]) : VIDEO.length - 1;
  res
    .writeHead(206, { ...all, "content-range": `bytes ${start}-${end}/${VIDEO.length}` })
    .end(VIDEO.slice(start, end + 1));
}

/** Status, Content-Range and body of an answer; a long body by its length (a failure prints no video). */
function part(answer: Answer): [number, string | undefined, string] {
  const { body } = answer;
  return [answer.status, answer.headers["content-range"], body.length > 20 ? `${body.length} bytes` : body];
}

describe("RFC 9110 §14 on Node: Range on answers that cannot be shared", () => {
  for (const cacheControl of ["no-store", "private, max-age=600"])
    it(`${cacheControl}: a seek is a 206, as direct; once the URL is known unshareable the origin sends only the part`, async () => {
      const origin = await scriptedOrigin((req, res) => video(req, res, { "cache-control": cacheControl }));
      const proxy = await proxyFor(origin.url);
      const start = await send(proxy.url, "/v", { range: "bytes=0-1" });
      expect(part(start)).toEqual([206, "bytes 0-1/200003", "ab"]);
      expect(start.headers["content-length"]).toBe("2");
      expect(start.headers["cache-status"]).toMatch(/fwd=uri-miss; fwd-status=200; detail=uncacheable/);
      const seek = await send(proxy.url, "/v", { range: "bytes=200000-" });
      expect(part(seek)).toEqual([206, "bytes 200000-200002/200003", VIDEO.slice(200_000)]);
      expect(part(await send(proxy.url, "/v"))).toEqual([200, undefined, "200003 bytes"]);
      // The first was a fill (the whole, unranged response); the seek was relayed with its Range.
      expect(origin.seen.map((r) => r.headers.range)).toEqual([undefined, "bytes=200000-", undefined]);
    });

  it("an origin that ignores Range: the 206 and 416 are cut from its 200, fill or relay; If-Range not matching gets the 200", async () => {
    const origin = await scriptedOrigin((req, res) =>
      video(req, res, { "cache-control": "no-store", etag: '"v1"' }, false),
    );
    const proxy = await proxyFor(origin.url);
    expect(part(await send(proxy.url, "/v", { range: "bytes=0-2" }))).toEqual([206, "bytes 0-2/200003", "abc"]);
    const seek = await send(proxy.url, "/v", { range: "bytes=199999-200001" });
    expect(part(seek)).toEqual([206, "bytes 199999-200001/200003", VIDEO.slice(199_999, 200_002)]);
    const past = await send(proxy.url, "/v", { range: "bytes=300000-" });
    expect(part(past).slice(0, 2)).toEqual([416, "bytes */200003"]);
    const resumed = await send(proxy.url, "/v", { range: "bytes=5-9", "if-range": '"v1"' });
    expect(part(resumed)).toEqual([206, "bytes 5-9/200003", "fghij"]);
    const changed = await send(proxy.url, "/v", { range: "bytes=5-9", "if-range": '"v0"' });
    expect(part(changed)).toEqual([200, undefined, "200003 bytes"]);
  });

  it("a private page's validators are answered as from a stored copy (304 with its Set-Cookie, 412), never stored", async () => {
    const origin = await scriptedOrigin((_req, res) =>
      res
        .writeHead(200, {
          "cache-control": "private, max-age=60",
          etag: '"v1"',
          "set-cookie": "s=1",
          "content-type": "text/plain",
        })
        .end("yours"),
    );
    const proxy = await proxyFor(origin.url);
    const same = await send(proxy.url, "/p", { "if-none-match": '"v1"' });
    expect([same.status, same.body, same.headers.etag, same.headers["set-cookie"]]).toEqual([304, "", '"v1"', ["s=1"]]);
    expect((await send(proxy.url, "/p", { "if-match": '"v0"' })).status).toBe(412);
    expect((await send(proxy.url, "/p", { "if-none-match": '"v0"' })).body).toBe("yours");
    expect(origin.seen.every((r) => r.headers["if-none-match"] === undefined)).toBe(true);
  });
});

describe("RFC 9211 §2.4 on Node: ttl of an answer that arrives already stale", () => {
  it("max-age=60 with Age: 100 is ttl=-40, and no stale-while-revalidate that did not happen; a later stale hit counts from there too", async () => {
    const origin = await scriptedOrigin((req, res) =>
      res
        .writeHead(200, {
          "cache-control": req.url === "/w" ? "max-age=60, stale-while-revalidate=300" : "max-age=60",
          age: "100",
        })
        .end("old"),
    );
    const proxy = await proxyFor(origin.url);
    expect((await send(proxy.url, "/s")).headers["cache-status"]).toBe(
      "herdless; fwd=uri-miss; fwd-status=200; ttl=-40; stored",
    );
    expect((await send(proxy.url, "/w")).headers["cache-status"]).toBe(
      "herdless; fwd=uri-miss; fwd-status=200; ttl=-40; stored",
    );
    proxy.clock.advance(5_000);
    expect((await send(proxy.url, "/w")).headers["cache-status"]).toBe(
      "herdless; hit; ttl=-45; detail=stale-while-revalidate",
    );
  });
});

describe("RFC 9111 §5.2.1 on Node: request Cache-Control", () => {
  it("a reload is a hit by default; only-if-cached with nothing stored is a 504", async () => {
    const origin = await scriptedOrigin((req, res, n) => page(req, res, n));
    const proxy = await proxyFor(origin.url);
    expect((await send(proxy.url, "/o", { "cache-control": "only-if-cached" })).status).toBe(504);
    await send(proxy.url, "/o");
    const reloads: Record<string, string>[] = [
      { "cache-control": "no-cache" },
      { "cache-control": "max-age=0" },
      { pragma: "no-cache" },
    ];
    for (const headers of reloads)
      expect((await send(proxy.url, "/o", headers)).headers["cache-status"]).toMatch(/^herdless; hit/);
    expect(origin.seen).toHaveLength(1);
  });

  it("honorRequestNoCache: concurrent reloads revalidate through one conditional origin request per flight", async () => {
    const held: (() => void)[] = [];
    const origin = await scriptedOrigin((req, res, n) => {
      if (n === 1) return page(req, res, n);
      // Revalidations wait for the test, so concurrent reloads find one in flight.
      held.push(() => page(req, res, n));
    });
    const proxy = await proxyFor(origin.url, { defaults: { honorRequestNoCache: true } });
    await send(proxy.url, "/h");
    proxy.clock.advance(2_000);
    let done = false;
    const reloads = Promise.all(
      Array.from({ length: 30 }, () => send(proxy.url, "/h", { "cache-control": "no-cache" })),
    );
    void reloads.finally(() => (done = true));
    while (!done) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      held.splice(0).forEach((answer) => answer());
    }
    const answers = await reloads;
    expect(answers.every((a) => a.status === 200 && a.body.startsWith("v1 /h"))).toBe(true);
    // Every reload either led a revalidation or joined one in flight: no origin request beyond one per flight.
    const leaders = answers.filter((a) => !String(a.headers["cache-status"]).includes("collapsed")).length;
    expect(origin.seen).toHaveLength(1 + leaders);
    expect(leaders).toBeLessThan(10);
    expect(origin.seen.slice(1).every((r) => r.headers["if-none-match"] === '"v1"')).toBe(true);
  });
});

describe("RFC 9111 §4.4 on Node: unsafe methods invalidate", () => {
  it("a POST answered 303 with a same-origin Location invalidates the target and the Location", async () => {
    const origin = await scriptedOrigin((req, res, n) => {
      if (req.method === "POST") return void res.writeHead(303, { location: "/list" }).end();
      page(req, res, n);
    });
    const proxy = await proxyFor(origin.url);
    await send(proxy.url, "/form");
    await send(proxy.url, "/list");
    expect((await send(proxy.url, "/form", {}, "POST")).status).toBe(303);
    expect((await send(proxy.url, "/form")).headers["cache-status"]).toContain("fwd=uri-miss");
    expect((await send(proxy.url, "/list")).headers["cache-status"]).toContain("fwd=uri-miss");
  });

  it("a POST invalidates every stored variant of the URL, not only the poster's: no other language is served its old page", async () => {
    let version = 1;
    const origin = await scriptedOrigin((req, res) => {
      if (req.method === "POST") return void (version++, res.writeHead(204).end());
      const lang = String(req.headers["accept-language"]);
      res
        .writeHead(200, { "cache-control": "max-age=600", vary: "Accept-Language", "content-type": "text/plain" })
        .end(`v${version} ${lang}`);
    });
    const proxy = await proxyFor(origin.url);
    const get = (lang: string) => send(proxy.url, "/page", { "accept-language": lang });
    for (const lang of ["de", "fr", "en"]) expect((await get(lang)).body).toBe(`v1 ${lang}`);
    expect((await get("fr")).headers["cache-status"]).toMatch(/^herdless; hit/);

    expect((await send(proxy.url, "/page", { "accept-language": "de" }, "POST")).status).toBe(204);
    proxy.clock.advance(1); // what is stored in the POST's own millisecond counts as before it
    for (const lang of ["fr", "en", "de"]) expect((await get(lang)).body).toBe(`v2 ${lang}`);
    // The new copies are served again as hits: only what was stored before the POST is invalid.
    for (const lang of ["fr", "en", "de"]) expect((await get(lang)).headers["cache-status"]).toMatch(/^herdless; hit/);
    expect(origin.seen.filter((r) => r.method === "GET")).toHaveLength(6);
  });
});

describe("interim responses, odd statuses and TRACE on Node", () => {
  it("103 Early Hints before the answer: dropped cleanly, the answer served and stored", async () => {
    const origin = await scriptedOrigin((req, res, n) => {
      res.writeEarlyHints({ link: "</style.css>; rel=preload; as=style" });
      page(req, res, n);
    });
    const proxy = await proxyFor(origin.url);
    const first = await send(proxy.url, "/e");
    expect(first.status).toBe(200);
    expect(first.body).toMatch(/^v1 \/e/);
    expect((await send(proxy.url, "/e")).headers["cache-status"]).toMatch(/^herdless; hit/);
  });

  it.each([150, 600])("origin status %i → a clean 502, the server keeps serving", async (status) => {
    const origin = await scriptedOrigin((req, res) => {
      res.socket?.end(`HTTP/1.1 ${status} Odd\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    });
    const proxy = await proxyFor(origin.url);
    const res = await send(proxy.url, "/odd");
    expect(res.status).toBe(502);
    expect((await send(proxy.url, "/odd", {}, "POST")).status).toBe(502);
  });

  it("RFC 9110 §9.3.8: TRACE → 405 answered by herdless; the origin never sees it", async () => {
    const origin = await scriptedOrigin((req, res, n) => page(req, res, n));
    const proxy = await proxyFor(origin.url);
    const res = await send(proxy.url, "/t", { cookie: "session=secret" }, "TRACE");
    expect(res.status).toBe(405);
    expect(res.body).not.toContain("secret");
    expect(origin.seen).toHaveLength(0);
  });
});

describe("RFC 9110 §8.6 on Node: the Content-Length a client sees", () => {
  it("a relayed answer keeps the origin's length (POST, a bypassed HEAD, a large uncacheable GET), a relayed 304 gets no invented one", async () => {
    const origin = await scriptedOrigin((req, res) => {
      if (req.method === "POST") return void res.writeHead(201, { location: "/x", "content-length": "2" }).end("ok");
      if (req.url === "/api/file") return void res.writeHead(200, { "content-length": "1234" }).end();
      if (req.url === "/unchanged")
        return void res.writeHead(304, { etag: '"v1"', "cache-control": "max-age=60" }).end();
      res.writeHead(200, { "cache-control": "no-store", "content-length": "100000" }).end("x".repeat(100_000));
    });
    const proxy = await proxyFor(origin.url, { routes: [{ match: "/api/*", bypass: true }] });
    const posted = await send(proxy.url, "/form", {}, "POST");
    expect([posted.status, posted.headers["content-length"], posted.headers["transfer-encoding"]]).toEqual([
      201,
      "2",
      undefined,
    ]);
    const head = await send(proxy.url, "/api/file", {}, "HEAD");
    expect([head.status, head.headers["content-length"], head.headers["cache-status"]]).toEqual([
      200,
      "1234",
      "herdless; fwd=bypass; fwd-status=200",
    ]);
    const large = await send(proxy.url, "/large");
    expect([large.headers["content-length"], large.body.length]).toEqual(["100000", 100_000]);
    expect(large.headers["cache-status"]).toContain("detail=uncacheable");
    // An origin's 304 to an unconditional request is relayed as it is, never stored.
    const unchanged = await send(proxy.url, "/unchanged");
    expect([unchanged.status, unchanged.headers["content-length"]]).toEqual([304, undefined]);
    expect(unchanged.headers["cache-status"]).toBe("herdless; fwd=uri-miss; fwd-status=304; detail=uncacheable");
  });

  it("a 204 carries no Content-Length, fetched or stored", async () => {
    const origin = await scriptedOrigin((req, res) => void res.writeHead(204, { "cache-control": "max-age=60" }).end());
    const proxy = await proxyFor(origin.url);
    const miss = await send(proxy.url, "/empty");
    const hit = await send(proxy.url, "/empty");
    expect([miss.status, miss.headers["content-length"]]).toEqual([204, undefined]);
    expect([hit.status, hit.headers["content-length"], hit.headers["cache-status"]]).toEqual([
      204,
      undefined,
      "herdless; hit; ttl=60",
    ]);
    expect(origin.seen).toHaveLength(1);
  });
});

describe("RFC 9110 §8.6, §15.4.5 on Node: no 304 carries Content-Length, as on the Worker", () => {
  it("relayed (GET or HEAD, the origin's own with one), made from the stored copy or from a fill's answer that cannot be shared", async () => {
    const origin = await scriptedOrigin((req, res, n) => {
      const privately: Record<string, string> = req.url === "/private" ? { "cache-control": "private" } : {};
      if (req.headers["if-none-match"] === '"v1"')
        return void res
          .writeHead(304, { etag: '"v1"', "cache-control": "max-age=60", "content-length": "100", ...privately })
          .end();
      page(req, res, n, { "content-length": "100", ...privately });
    });
    const proxy = await proxyFor(origin.url, { routes: [{ match: "/api/*", bypass: true }] });
    const conditional = { "if-none-match": '"v1"' };
    const answers = [
      await send(proxy.url, "/api/file", conditional),
      await send(proxy.url, "/api/file", conditional, "HEAD"),
      await send(proxy.url, "/page", conditional),
      await send(proxy.url, "/page", conditional),
      await send(proxy.url, "/page", { "if-modified-since": LAST_MODIFIED }, "HEAD"),
      await send(proxy.url, "/private", conditional),
    ];
    expect(answers.map((a) => [a.status, a.headers["content-length"], a.headers["cache-status"]])).toEqual([
      [304, undefined, "herdless; fwd=bypass; fwd-status=304"],
      [304, undefined, "herdless; fwd=bypass; fwd-status=304"],
      [304, undefined, "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored"],
      [304, undefined, "herdless; hit; ttl=60"],
      [304, undefined, "herdless; hit; ttl=60"],
      [304, undefined, "herdless; fwd=uri-miss; fwd-status=200; detail=uncacheable"],
    ]);
    // A HEAD without a condition still hears the representation's length.
    expect((await send(proxy.url, "/api/file", {}, "HEAD")).headers["content-length"]).toBe("100");
  });
});

describe("RFC 9110 §6.6.1 on Node: a response without Date", () => {
  it("gets the time it arrived, kept with the stored copy (not the time each copy is served)", async () => {
    const origin = await scriptedOrigin((req, res) => {
      res.sendDate = false;
      res.writeHead(200, { "cache-control": "max-age=60" }).end("dateless");
    });
    const proxy = await proxyFor(origin.url, {}, Date.UTC(2030, 0, 1));
    const miss = await send(proxy.url, "/d");
    proxy.clock.advance(30_000);
    const hit = await send(proxy.url, "/d");
    expect([miss.headers.date, hit.headers.date]).toEqual([
      "Tue, 01 Jan 2030 00:00:00 GMT",
      "Tue, 01 Jan 2030 00:00:00 GMT",
    ]);
    expect([hit.headers.age, hit.headers["cache-status"]]).toEqual(["30", "herdless; hit; ttl=30"]);
  });
});
