/**
 * How the Worker answers clients from what it holds (conditional requests, Range, request
 * Cache-Control), invalidation by unsafe methods at the key's coordinator, and origin
 * statuses no Response can carry. Each data center has its own Cache API cache.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { dataCenter, dataCenters, edgeEnv, settle, useGuardConfig, useInCoordinators } from "./edge-harness.ts";
import { largeBodyByte } from "./origin-protocol.ts";
import { testOrigin } from "./test-origin.ts";

const ETAG = '"v1"';

describe("RFC 9111 §4.3.2 on the Worker: client conditional requests answered from the cache", () => {
  it("If-None-Match / If-Modified-Since matching the stored entry → 304, no origin request", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60", "last-modified": "Tue, 01 Jan 2030 00:00:00 GMT" },
      etag: ETAG,
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const first = await dc!.get("/c");
    expect(first.status).toBe(200);
    const inm = await dc!.get("/c", { headers: { "if-none-match": `W/${ETAG}` } });
    expect(inm.status).toBe(304);
    expect(inm.body).toBe("");
    expect(inm.headers.get("etag")).toBe(ETAG);
    expect(inm.cacheStatus).toMatch(/^herdless; hit/);
    const ims = await dc!.get("/c", { headers: { "if-modified-since": "Tue, 01 Jan 2030 00:00:00 GMT" } });
    expect(ims.status).toBe(304);
    const other = await dc!.get("/c", { headers: { "if-none-match": '"v0"' } });
    expect(other.status).toBe(200);
    expect(other.body).toBe(first.body);
    expect(await origin.count()).toBe(1);
    // The fill the first client caused was not conditional on the client's validators.
    expect((await origin.stats()).requests[0]!.headers["if-none-match"]).toBeUndefined();
  });
});

describe("RFC 9110 §15.4.5 on the Worker: a 304 made from the cache carries what the origin's own 304 carries", () => {
  it("a page's cross-origin fetch() with its own If-None-Match gets Access-Control-Allow-Origin, Link and the rest, not the body's metadata", async () => {
    const origin = await testOrigin({
      headers: {
        "cache-control": "max-age=60",
        "access-control-allow-origin": "https://app.example",
        vary: "Origin",
        link: "</next>; rel=next",
        "x-total": "42",
        "content-type": "application/json",
        "content-language": "en",
      },
      etag: ETAG,
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    expect((await dc!.get("/api/items", { headers: { origin: "https://app.example" } })).status).toBe(200);
    const cached = await dc!.get("/api/items", { headers: { origin: "https://app.example", "if-none-match": ETAG } });
    expect([cached.status, cached.cacheStatus]).toEqual([304, expect.stringMatching(/^herdless; hit/)]);
    const fields = ["access-control-allow-origin", "vary", "link", "x-total", "content-type", "content-language"];
    expect(fields.map((name) => cached.headers.get(name))).toEqual([
      "https://app.example",
      "Origin",
      "</next>; rel=next",
      "42",
      null,
      null,
    ]);
    expect(await origin.count()).toBe(1);
  });
});

describe("RFC 9111 §4.3.2 on the Worker: a cold key whose body streams", () => {
  it("If-None-Match matching the new ETag → 304 as from a stored copy, If-Match failing → 412; the body is still stored", async () => {
    const size = 200_000;
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" }, etag: ETAG, bodyBytes: size });
    const testEnv = edgeEnv(origin.url);
    const [a, b] = dataCenters(2, testEnv);
    const inm = await a!.get("/big", { headers: { "if-none-match": ETAG } });
    expect(inm.status).toBe(304);
    expect(inm.body).toBe("");
    expect(inm.headers.get("etag")).toBe(ETAG);
    expect(inm.cacheStatus).toMatch(/fwd=uri-miss; fwd-status=200/);
    await settle([inm], testEnv, ["/big"]);
    const full = await b!.get("/big");
    expect([full.status, full.body.length]).toEqual([200, size]);
    expect(full.cacheStatus).toMatch(/^herdless; hit/);
    const failed = await b!.get("/big-2", { headers: { "if-match": '"v0"' } });
    expect(failed.status).toBe(412);
    await settle([failed], testEnv, ["/big-2"]);
    expect((await a!.get("/big-2")).cacheStatus).toMatch(/^herdless; hit/);
    expect(await origin.count()).toBe(2);
  });
});

describe("RFC 9110 §14 on the Worker: Range from the stored full response", () => {
  it("206 for single and suffix ranges, 416 past the end; the origin never sees a Range; the full 200 is stored", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" }, body: "0123456789" });
    const [a, b] = dataCenters(2, edgeEnv(origin.url));
    const part = await a!.get("/r", { headers: { range: "bytes=0-3" } });
    expect(part.status).toBe(206);
    expect(part.body).toBe("0123");
    expect(part.headers.get("content-range")).toBe("bytes 0-3/10");
    const suffix = await a!.get("/r", { headers: { range: "bytes=-2" } });
    expect(suffix.body).toBe("89");
    const open = await b!.get("/r", { headers: { range: "bytes=7-" } });
    expect(open.status).toBe(206);
    expect(open.body).toBe("789");
    const past = await a!.get("/r", { headers: { range: "bytes=10-" } });
    expect(past.status).toBe(416);
    expect(past.headers.get("content-range")).toBe("bytes */10");
    const full = await b!.get("/r");
    expect(full.status).toBe(200);
    expect(full.body).toBe("0123456789");
    const stats = await origin.stats();
    expect(stats.count).toBe(1);
    expect(stats.requests[0]!.headers["range"]).toBeUndefined();
  });
});

/** Bytes `start` to `end` (inclusive) of the test origin's generated body. */
function generated(start: number, end: number): number[] {
  const out: number[] = [];
  for (let i = start; i <= end; i++) out.push(largeBodyByte(i));
  return out;
}

describe("RFC 9110 §14 on the Worker: Range on answers that cannot be shared", () => {
  for (const cacheControl of ["no-store", "private, max-age=600"])
    it(`${cacheControl}: a seek is a 206, never the whole video; once the URL is known unshareable the seek is relayed with its Range`, async () => {
      const size = 200_003;
      const origin = await testOrigin({
        headers: { "cache-control": cacheControl, "content-type": "video/mp4", "accept-ranges": "bytes" },
        bodyBytes: size,
      });
      const [dc] = dataCenters(1, edgeEnv(origin.url));
      const path = `/v-${crypto.randomUUID()}.mp4`;
      const start = (await dc!.fetch(path, { headers: { range: "bytes=0-1" } })).response;
      expect([start.status, start.headers.get("content-range"), start.headers.get("content-length")]).toEqual([
        206,
        `bytes 0-1/${size}`,
        "2",
      ]);
      expect(start.headers.get("cache-status")).toMatch(/fwd=uri-miss; fwd-status=200; detail=uncacheable/);
      expect([...new Uint8Array(await start.arrayBuffer())]).toEqual(generated(0, 1));
      // The test origin ignores Range, as many do: its whole 200 is cut here too.
      const seek = (await dc!.fetch(path, { headers: { range: "bytes=200000-" } })).response;
      expect([seek.status, seek.headers.get("content-range")]).toEqual([206, `bytes 200000-200002/${size}`]);
      expect([...new Uint8Array(await seek.arrayBuffer())]).toEqual(generated(200_000, 200_002));
      const past = (await dc!.fetch(path, { headers: { range: "bytes=300000-" } })).response;
      expect([past.status, past.headers.get("content-range")]).toEqual([416, `bytes */${size}`]);
      await past.body?.cancel();
      const ranges = (await origin.stats()).requests.map((r) => r.headers.range);
      expect(ranges).toEqual([undefined, "bytes=200000-", "bytes=300000-"]);
    });
});

describe("RFC 9211 §2.4 on the Worker: ttl of an answer that arrives already stale", () => {
  it("max-age=60 with Age: 100 counts from 40 seconds ago; no stale-while-revalidate that did not happen", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60", age: "100" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const first = await dc!.get(`/old-${crypto.randomUUID()}`);
    // -41 when the origin took a millisecond to answer: its 100 seconds of Age were older by then.
    expect(first.cacheStatus).toMatch(/^herdless; fwd=uri-miss; fwd-status=200; ttl=-4[01]; stored$/);
  });
});

describe("RFC 9111 §5.2.1 on the Worker: request Cache-Control", () => {
  it("only-if-cached → 504 with nothing stored; a reload (no-cache) is a hit by default", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    expect((await dc!.get("/o", { headers: { "cache-control": "only-if-cached" } })).status).toBe(504);
    expect(await origin.count()).toBe(0);
    await dc!.get("/o");
    const reload = await dc!.get("/o", { headers: { "cache-control": "no-cache", pragma: "no-cache" } });
    expect(reload.cacheStatus).toMatch(/^herdless; hit/);
    expect(await origin.count()).toBe(1);
  });

  it("honorRequestNoCache: a reload revalidates at the key's coordinator", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" }, etag: ETAG });
    const testEnv = edgeEnv(origin.url, { defaults: { honorRequestNoCache: true } });
    const [a, b] = dataCenters(2, testEnv);
    await a!.get("/h");
    const reload = await a!.get("/h", { headers: { "cache-control": "no-cache" } });
    expect(reload.status).toBe(200);
    expect(reload.cacheStatus).toContain("fwd=request");
    // A data center without a copy does not take the coordinator's unvalidated one either.
    const elsewhere = await b!.get("/h", { headers: { pragma: "no-cache" } });
    expect(elsewhere.status).toBe(200);
    const stats = await origin.stats();
    expect(stats.count).toBe(3);
    // Conditional: the coordinator's stored validator, answered 304 by the origin.
    expect(stats.requests[1]!.headers["if-none-match"]).toBe(ETAG);
    expect(stats.requests[2]!.headers["if-none-match"]).toBe(ETAG);
  });

  it("honorRequestNoCache: a reload that also says only-if-cached is a 504, never an origin request", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" }, etag: ETAG });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { defaults: { honorRequestNoCache: true } }));
    await dc!.get("/oh");
    const reload = await dc!.get("/oh", { headers: { "cache-control": "no-cache, only-if-cached" } });
    expect([reload.status, reload.cacheStatus]).toEqual([504, "herdless; fwd=request"]);
    expect(await origin.count()).toBe(1);
  });
});

describe("RFC 9111 §4.4 on the Worker: unsafe methods invalidate at the key's coordinator", () => {
  it("after a POST, a data center with no copy of its own gets the new response, not the coordinator's old one", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const [a, b, c] = dataCenters(3, edgeEnv(origin.url));
    const before = await a!.get("/item");
    expect(before.body).toBe("/item #1");
    const post = await b!.get("/item", { method: "POST", body: "x" });
    expect(post.status).toBe(200);
    const after = await c!.get("/item");
    expect(after.body).toBe("/item #3");
    expect(after.cacheStatus).toContain("fwd=uri-miss");
  });

  it("a POST invalidates every variant of the URL in the data center that relayed it, not only the poster's", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600", vary: "Accept-Language" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const get = (lang: string) => dc!.get("/langs", { headers: { "accept-language": lang } });
    const before = new Map<string, string>();
    for (const lang of ["de", "fr", "en"]) before.set(lang, (await get(lang)).body);
    expect((await get("fr")).cacheStatus).toMatch(/^herdless; hit/);

    expect((await dc!.get("/langs", { method: "POST", body: "x", headers: { "accept-language": "de" } })).status).toBe(
      200,
    );
    for (const lang of ["fr", "en", "de"]) {
      const after = await get(lang);
      expect(after.body, lang).not.toBe(before.get(lang));
      expect(after.cacheStatus, lang).toContain("fwd-status=200");
    }
    for (const lang of ["fr", "en", "de"]) expect((await get(lang)).cacheStatus, lang).toMatch(/^herdless; hit/);
    expect(await origin.count("/langs")).toBe(7);
  });

  it("a POST through one isolate reaches the memory of another isolate of the same data center within admin.purgePropagationMs", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url, { admin: { purgePropagationMs: 1_000 } });
    const run = crypto.randomUUID().slice(0, 8);
    // Two isolates behind one Cache API cache: one data center, as Cloudflare runs several.
    const [writer, reader] = ["w", "r"].map((name) =>
      dataCenter(`dc-${run}`, testEnv, clock, { isolate: `${name}-${run}` }),
    );
    await useInCoordinators(testEnv, ["/doc"], clock);
    const first = await writer!.get("/doc");
    await first.settled;
    const held = await reader!.get("/doc");
    expect([held.body, held.cacheStatus]).toEqual([first.body, expect.stringMatching(/^herdless; hit/)]);
    expect((await reader!.get("/doc")).cacheStatus).toMatch(/^herdless; hit/);

    const post = await writer!.get("/doc", { method: "POST", body: "edit" });
    expect(post.status).toBe(200);
    await post.settled;
    clock.advance(1_000);
    // The copy answers once more while the isolate reads its data center's Cache API again.
    const last = await reader!.get("/doc");
    expect([last.body, last.cacheStatus]).toEqual([first.body, expect.stringMatching(/^herdless; hit/)]);
    await last.settled;
    const after = await reader!.get("/doc");
    expect(after.body).not.toBe(first.body);
    expect(after.cacheStatus).toContain("fwd-status=200");
    expect(await origin.count("/doc")).toBe(3);
  });

  it("a same-origin Location target is invalidated too", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=600" } });
    const [a, b] = dataCenters(2, edgeEnv(origin.url));
    await a!.get("/list");
    await origin.set({ paths: { "/add": { status: 201, headers: { location: "/list" } } } });
    expect((await a!.get("/add", { method: "POST", body: "x" })).status).toBe(201);
    const list = await b!.get("/list");
    expect(list.cacheStatus).toContain("fwd=uri-miss");
    expect(await origin.count("/list")).toBe(2);
  });
});

describe("security: RFC 9111 §4.4 on the Worker, a write holds for every request after it returned", () => {
  /** A POST the origin answers at once, whatever it does with GETs (test-origin `byHeader`). */
  const WRITE = { method: "POST", body: "new text", headers: { "x-write": "1" } };

  it("a copy a POST invalidated while its revalidation ran at the key's object is never served stale-if-error, to the writer's next request nor to the request in another data center that led that revalidation", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=1" },
      body: "balance v1",
      byHeader: { "x-write": { mode: "up", delayMs: 0 } },
    });
    const testEnv = edgeEnv(origin.url, { breaker: { failureThreshold: 100, backoffBaseMs: 0 } });
    const clock = new ManualClock(Date.now());
    const guardName = `guard-${crypto.randomUUID()}`;
    await useGuardConfig(testEnv, guardName);
    await useInCoordinators(testEnv, ["/balance"], clock, guardName);
    const [writers, elsewhere] = dataCenters(2, testEnv, clock, { ownIsolate: true });
    expect((await writers!.get("/balance")).body).toBe("balance v1");
    clock.advance(2_000);
    // An outage: the origin resets each GET after 800 ms (real time).
    await origin.set({ mode: "down", delayMs: 800 });
    // A data center without a copy of its own: the key's object revalidates its copy.
    const leader = elsewhere!.get("/balance");
    await origin.waitFor({ count: 2 });
    clock.advance(5);
    expect((await writers!.get("/balance", WRITE)).status).toBe(200);
    clock.advance(5);
    // Before: both were answered the object's copy the write had made obsolete (200 balance v1, detail=stale-if-error).
    const writer = writers!.get("/balance");
    for (const answer of await Promise.all([writer, leader])) {
      expect(answer.status).toBe(502);
      expect(answer.body).not.toContain("balance v1");
      expect(answer.cacheStatus).toMatch(/detail=origin-error$/);
    }
  });

  it("a GET sent after a successful POST never collapses onto a fill sent before it, in the writer's isolate or at the key's object", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      mode: "hold",
      byHeader: { "x-write": { mode: "up" } },
    });
    const testEnv = edgeEnv(origin.url);
    const path = `/profile-${crypto.randomUUID().slice(0, 8)}`;
    const [a, b] = dataCenters(2, testEnv, undefined, { ownIsolate: true });
    const slow = a!.get(path);
    await origin.waitFor({ held: 1 });
    expect((await a!.get(path, WRITE)).status).toBe(200);
    // The writer's next read, in the isolate whose call is running, and one from another data center.
    const reads = [a!.get(path), b!.get(path)];
    // Real time for ordering only: the reads reach the running fill before it answers.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await origin.set({ mode: "up" });
    await origin.release();
    expect((await slow).body).toBe(`${path} #1`);
    // Before: both were handed the page the origin answered before the write, collapsed onto that fill.
    // Now each asks again: one fill after the write, which the other may join.
    for (const read of await Promise.all(reads)) expect(read.body).toBe(`${path} #3`);
    expect(await origin.count(path)).toBe(3);
  });
});

describe("origin statuses the Worker cannot relay", () => {
  it.each([150, 101, 600])("status %i from the origin → a clean 502, never an uncaught RangeError", async (status) => {
    // Written raw: Node's own writer would not send these as a final answer.
    const origin = await testOrigin({ status, rawHeaderLines: "" });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const res = await dc!.get("/odd");
    expect(res.status).toBe(502);
    expect(res.body).toMatch(/status/);
    const post = await dc!.get("/odd", { method: "POST", body: "x" });
    expect(post.status).toBe(502);
  });

  it("103 Early Hints: the answer behind it is served and stored, though workerd's fetch hands the 103 over as final", async () => {
    // workerd gives the final answer as the 103's body, unparsed; interim-fetch.ts reads it back.
    const origin = await testOrigin({ earlyHints: true, headers: { "cache-control": "max-age=60", "x-final": "1" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const first = await dc!.get("/hints");
    expect([first.status, first.body, first.headers.get("x-final"), first.headers.get("link")]).toEqual([
      200,
      "/hints #1",
      "1",
      null,
    ]);
    expect(first.cacheStatus).toContain("stored");
    await first.settled;
    const again = await dc!.get("/hints");
    expect([again.status, again.body]).toEqual([200, "/hints #1"]);
    expect(again.cacheStatus).toMatch(/^herdless; hit/);
    expect(await origin.count()).toBe(1);
  });
});

describe("W3C Edge Architecture §3 on the Worker: Surrogate-Control governs this cache", () => {
  it("a surrogate max-age stores what Cache-Control: no-store would not; the origin is told herdless's device token", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "no-store", "surrogate-control": "max-age=60;herdless" },
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const first = await dc!.get("/surrogate");
    expect(first.status).toBe(200);
    const second = await dc!.get("/surrogate");
    expect(second.cacheStatus).toMatch(/^herdless; hit/);
    expect(second.body).toBe(first.body);
    const stats = await origin.stats();
    expect(stats.count).toBe(1);
    expect(stats.requests[0]!.headers["surrogate-capability"]).toBe('herdless="Surrogate/1.0"');
  });
});

describe("RFC 9110 §8.6 on the Worker: the Content-Length a client sees", () => {
  it("a relayed answer keeps the origin's length (POST, a bypassed HEAD, a large uncacheable GET); a 204 gets none, fetched or stored", async () => {
    const origin = await testOrigin({
      paths: {
        "/form": { status: 201, body: "ok" },
        "/api/file": { body: "x".repeat(1234) },
        "/large": { headers: { "cache-control": "no-store" }, bodyBytes: 100_000 },
        "/empty": { status: 204, body: "", headers: { "cache-control": "max-age=60" } },
      },
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { routes: [{ match: "/api/*", bypass: true }] }));
    const posted = await dc!.get("/form", { method: "POST", body: "x" });
    expect([posted.status, posted.headers.get("content-length"), posted.body]).toEqual([201, "2", "ok"]);
    const head = await dc!.get("/api/file", { method: "HEAD" });
    expect([head.status, head.headers.get("content-length"), head.cacheStatus]).toEqual([
      200,
      "1234",
      "herdless; fwd=bypass; fwd-status=200",
    ]);
    const large = await dc!.get("/large");
    expect([large.headers.get("content-length"), large.body.length]).toEqual(["100000", 100_000]);
    expect(large.cacheStatus).toContain("detail=uncacheable");
    const miss = await dc!.get("/empty");
    await miss.settled;
    const hit = await dc!.get("/empty");
    expect([miss.status, miss.headers.get("content-length")]).toEqual([204, null]);
    expect([hit.status, hit.headers.get("content-length")]).toEqual([204, null]);
    expect(hit.cacheStatus).toMatch(/^herdless; hit/);
  });
});

describe("RFC 9110 §8.6, §15.4.5 on the Worker: no 304 carries Content-Length, as on Node", () => {
  it("relayed (GET or HEAD, the origin's own with one), made from the stored copy or from a fill's answer that cannot be shared", async () => {
    // workerd sends no Content-Length on a GET's 304 whatever the Response says, but does on a HEAD's.
    const origin = await testOrigin({
      etag: ETAG,
      headers: { "cache-control": "max-age=60", "last-modified": "Tue, 01 Jan 2030 00:00:00 GMT" },
      body: "x".repeat(1234),
      notModifiedHeaders: { "content-length": "1234" },
      paths: { "/private": { headers: { "cache-control": "private" } } },
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { routes: [{ match: "/api/*", bypass: true }] }));
    const conditional = { "if-none-match": ETAG };
    const answers = [
      await dc!.get("/api/file", { headers: conditional }),
      await dc!.get("/api/file", { method: "HEAD", headers: conditional }),
      await dc!.get("/page", { headers: conditional }),
      await dc!.get("/page", { headers: conditional }),
      await dc!.get("/page", { method: "HEAD", headers: { "if-modified-since": "Tue, 01 Jan 2030 00:00:00 GMT" } }),
      await dc!.get("/private", { headers: conditional }),
    ];
    // The ttl as the real clock has it: 60 or 59.
    const status = (a: { cacheStatus: string }) => a.cacheStatus.replace(/ttl=(60|59)/, "ttl=60");
    expect(answers.map((a) => [a.status, a.headers.get("content-length"), status(a)])).toEqual([
      [304, null, "herdless; fwd=bypass; fwd-status=304"],
      [304, null, "herdless; fwd=bypass; fwd-status=304"],
      [304, null, "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored"],
      [304, null, "herdless; hit; ttl=60"],
      [304, null, "herdless; hit; ttl=60"],
      [304, null, "herdless; fwd=uri-miss; fwd-status=200; detail=uncacheable"],
    ]);
    // A HEAD without a condition still hears the representation's length.
    expect((await dc!.get("/api/file", { method: "HEAD" })).headers.get("content-length")).toBe("1234");
  });
});

describe("RFC 9110 §14.2 on the Worker: a relayed HEAD's Range means nothing, as on Node", () => {
  it("a bypassed HEAD with Range (a part, past the end, If-Range) is answered 200 with the whole length; the origin hears no Range", async () => {
    const origin = await testOrigin({ etag: ETAG, body: "x".repeat(1234) });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { routes: [{ match: "/api/*", bypass: true }] }));
    const ranges: Record<string, string>[] = [
      { range: "bytes=0-99" },
      { range: "bytes=5000-" },
      { range: "bytes=-10", "if-range": ETAG },
    ];
    const answers = [];
    for (const headers of ranges) answers.push(await dc!.get("/api/file", { method: "HEAD", headers }));
    expect(answers.map((a) => [a.status, a.headers.get("content-length"), a.headers.get("content-range")])).toEqual(
      Array(3).fill([200, "1234", null]),
    );
    const heard = (await origin.stats()).requests.map((r) => [r.headers["range"], r.headers["if-range"]]);
    expect(heard).toEqual(Array(3).fill([undefined, undefined]));
  });
});

describe("RFC 9110 §6.6.1 on the Worker: a response without Date", () => {
  it("gets the time it arrived, kept with the stored copy", async () => {
    // The test origin is Node's server; raw lines are the way to answer without its Date.
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" }, rawHeaderLines: "" });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const miss = await dc!.get("/dateless");
    await miss.settled;
    const hit = await dc!.get("/dateless");
    expect(miss.headers.get("date")).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    expect(hit.headers.get("date")).toBe(miss.headers.get("date"));
    expect(hit.cacheStatus).toMatch(/^herdless; hit/);
  });
});

describe("RFC 9110 §6.6.1 on the Worker: herdless's own answers carry a Date", () => {
  it("a 412 from the stored copy and a 504 for only-if-cached", async () => {
    const origin = await testOrigin({ etag: ETAG, headers: { "cache-control": "max-age=60" } });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    await (
      await dc!.get("/stored")
    ).settled;
    const failed = await dc!.get("/stored", { headers: { "if-match": '"other"' } });
    const notCached = await dc!.get("/elsewhere", { headers: { "cache-control": "only-if-cached" } });
    expect([failed.status, notCached.status]).toEqual([412, 504]);
    for (const answer of [failed, notCached])
      expect(answer.headers.get("date")).toMatch(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  });
});
