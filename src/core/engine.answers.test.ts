/**
 * How the engine answers clients from what it holds: conditional requests, Range, request
 * Cache-Control, unsafe-method invalidation, and the statuses and methods it never relays.
 * The near tier and the coordinator's store are separate stores here, as on the Worker.
 */
import { describe, expect, it, vi } from "vitest";
import { ManualClock } from "./clock.ts";
import { parseConfig, type ConfigInput } from "./config.ts";
import { Engine, type EngineRequest } from "./engine.ts";
import { KeyCoordinator } from "./fill/key-coordinator.ts";
import { MemoryLeaseManager } from "./fill/memory-lease.ts";
import { LocalGuard } from "./guard/local-guard.ts";
import type { FetchLike } from "./origin/origin-client.ts";
import { LruStore } from "./store/lru-store.ts";
import type { Store } from "./store/store.ts";
import { notInvalidated } from "./http/entry.ts";

const LAST_MODIFIED = "Tue, 01 Jan 2030 00:00:00 GMT";

class Origin {
  calls: { method: string; url: string; headers: Headers }[] = [];
  version = 1;
  status = 200;
  headers: Record<string, string> = {};
  gate: Promise<void> | undefined;

  fetch: FetchLike = async (url, init) => {
    const headers = new Headers(init.headers);
    this.calls.push({ method: init.method ?? "GET", url, headers });
    if (this.gate) await this.gate;
    const etag = `"v${this.version}"`;
    const common = { etag, "last-modified": LAST_MODIFIED, "cache-control": "max-age=60", ...this.headers };
    if (init.method === "GET" && headers.get("if-none-match") === etag)
      return new Response(null, { status: 304, headers: common });
    const body = `v${this.version} ${new URL(url).pathname}`.padEnd(100, ".");
    return new Response(body, { status: this.status, headers: { ...common, "content-length": "100" } });
  };
}

function setup(overrides: Partial<ConfigInput> = {}, fetch?: FetchLike) {
  const clock = new ManualClock(1_900_000_000_000);
  const config = parseConfig({ origin: { url: "http://origin.test" }, ...overrides });
  const origin = new Origin();
  if (fetch) origin.fetch = fetch;
  const near = new LruStore({ maxBytes: 1 << 26, clock });
  const shared = new LruStore({ maxBytes: 1 << 26, clock });
  const guard = new LocalGuard({ config, clock });
  const coordinator = new KeyCoordinator({
    config,
    clock,
    store: shared,
    leases: new MemoryLeaseManager(clock),
    guard,
    fetch: origin.fetch,
  });
  const engine = new Engine({ config, clock, near, coordinator, guard, fetch: origin.fetch, background: () => {} });
  return { clock, origin, engine, near, shared };
}

function req(path: string, headers: Record<string, string> = {}, method = "GET"): EngineRequest {
  return {
    method,
    url: new URL(`https://site.test${path}`),
    headers: new Headers(headers),
    rawHeaders: Object.entries(headers).map(([n, v]) => [n.toLowerCase(), v]),
  };
}

const text = (body: unknown) => new TextDecoder().decode(body as Uint8Array);
const header = (res: { headers: [string, string][] }, name: string) => res.headers.find(([n]) => n === name)?.[1];

describe("RFC 9111 §4.3.2: client conditional requests answered from the cache", () => {
  it("If-None-Match matching a fresh entry → 304 from the cache, no origin request", async () => {
    const t = setup();
    await t.engine.handle(req("/a"));
    const res = await t.engine.handle(req("/a", { "if-none-match": 'W/"v1"' }));
    expect(res.status).toBe(304);
    expect(res.body).toBeNull();
    expect(header(res, "etag")).toBe('"v1"');
    expect(header(res, "cache-status")).toBe("herdless; hit; ttl=60");
    expect(header(res, "content-length")).toBeUndefined();
    expect(t.origin.calls).toHaveLength(1);
  });

  it("If-Modified-Since on a cold key: the fill is unconditional, the client gets its 304", async () => {
    const t = setup();
    const res = await t.engine.handle(req("/b", { "if-modified-since": LAST_MODIFIED }));
    expect(res.status).toBe(304);
    expect(t.origin.calls).toHaveLength(1);
    // The client's validator never reaches the origin on a shared fill: the stored copy is a full 200.
    expect(t.origin.calls[0]!.headers.get("if-modified-since")).toBeNull();
    const full = await t.engine.handle(req("/b"));
    expect(full.status).toBe(200);
    expect(text(full.body)).toMatch(/^v1 \/b/);
  });

  it.each([
    ["If-None-Match matching the new ETag", 304, { "if-none-match": '"big1"' }],
    ["If-Modified-Since at its Last-Modified", 304, { "if-modified-since": LAST_MODIFIED }],
    ["If-Match failing against it", 412, { "if-match": '"big0"' }],
  ] as [string, number, Record<string, string>][])(
    "a cold key whose body streams (too large to read first), %s: the same %i as from a stored copy; the body is still stored",
    async (_what, expected, conditions) => {
      const size = 200_000;
      let calls = 0;
      const t = setup({}, async () => {
        calls++;
        const headers = { etag: '"big1"', "last-modified": LAST_MODIFIED, "cache-control": "max-age=60" };
        return new Response("x".repeat(size), { headers: { ...headers, "content-length": String(size) } });
      });
      const [mine, plain] = await Promise.all([t.engine.handle(req("/big", conditions)), t.engine.handle(req("/big"))]);
      expect(mine.status).toBe(expected);
      if (expected === 304) {
        expect(mine.body).toBeNull();
        expect(header(mine, "content-length")).toBeUndefined();
        expect(header(mine, "etag")).toBe('"big1"');
        expect(header(mine, "cache-status")).toMatch(/fwd=uri-miss; fwd-status=200/);
      }
      // The caller that joined the same fetch still reads the whole body, and it is stored.
      expect(new Uint8Array(await new Response(plain.body as ReadableStream).arrayBuffer()).byteLength).toBe(size);
      await vi.waitFor(async () => expect(header(await t.engine.handle(req("/big")), "cache-status")).toMatch(/hit/));
      expect((await t.engine.handle(req("/big", conditions))).status).toBe(expected);
      expect(calls).toBe(1);
    },
  );

  it("a validator that does not match gets the full 200", async () => {
    const t = setup();
    await t.engine.handle(req("/c"));
    const res = await t.engine.handle(req("/c", { "if-none-match": '"v0"' }));
    expect(res.status).toBe(200);
    expect(text(res.body)).toMatch(/^v1 \/c/);
  });

  it("RFC 9110 §13.1.1: If-Match failing against the stored ETag → 412, not forwarded", async () => {
    const t = setup();
    await t.engine.handle(req("/d"));
    expect((await t.engine.handle(req("/d", { "if-match": '"v7"' }))).status).toBe(412);
    expect((await t.engine.handle(req("/d", { "if-match": '"v1"' }))).status).toBe(200);
    expect(t.origin.calls).toHaveLength(1);
  });
});

describe("a shared fill carries none of one client's preconditions or ranges", () => {
  it("Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since stay at the edge, even when the response varies on them", async () => {
    const t = setup();
    t.origin.headers = { vary: "range, if-none-match" };
    const client = {
      range: "bytes=0-1",
      "if-range": '"v1"',
      "if-match": '"v1"',
      "if-none-match": '"zz"',
      "if-modified-since": "Mon, 31 Dec 2029 00:00:00 GMT",
      "if-unmodified-since": LAST_MODIFIED,
    };
    await t.engine.handle(req("/v", client));
    t.clock.advance(61_000);
    await t.engine.handle(req("/v", client));
    expect(t.origin.calls).toHaveLength(2);
    // The second call revalidates the copy (its variant is the one stored: the fill sent none of
    // these) with herdless's own validators, never the client's.
    const own: Record<string, string> = { "if-none-match": '"v1"', "if-modified-since": LAST_MODIFIED };
    for (const call of t.origin.calls)
      for (const name of Object.keys(client))
        if (call.headers.get(name) !== own[name]) expect(call.headers.get(name), name).toBeNull();
  });
});

describe("RFC 9111 §5.2.2.4 / §5.2.2.7: the fields a qualified no-cache or private names", () => {
  const named = { "cache-control": 'max-age=60, no-cache="x-a", private="X-B"', "x-a": "1", "x-b": "2", "x-c": "3" };
  const bytes = async (body: unknown) =>
    body instanceof ReadableStream ? new Uint8Array(await new Response(body).arrayBuffer()) : (body as Uint8Array);

  it.each([
    ["read whole", 100],
    ["streamed to every caller", 200_000],
  ])(
    "reach the request that made the fill (body %s); the callers that joined it and every later hit go without them",
    async (_how, size) => {
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      let calls = 0;
      const t = setup({}, async () => {
        calls++;
        await gate;
        return new Response("x".repeat(size), { headers: { ...named, "content-length": String(size) } });
      });
      const leader = t.engine.handle(req("/named"));
      await vi.waitFor(() => expect(calls).toBe(1));
      const joined = [t.engine.handle(req("/named")), t.engine.handle(req("/named"))];
      await new Promise((resolve) => setTimeout(resolve, 0));
      open();
      const first = await leader;
      expect([header(first, "x-a"), header(first, "x-b"), header(first, "x-c")]).toEqual(["1", "2", "3"]);
      expect((await bytes(first.body)).byteLength).toBe(size);
      for (const waiter of await Promise.all(joined)) {
        expect(header(waiter, "cache-status")).toMatch(/collapsed/);
        expect([header(waiter, "x-a"), header(waiter, "x-b"), header(waiter, "x-c")]).toEqual([
          undefined,
          undefined,
          "3",
        ]);
        expect((await bytes(waiter.body)).byteLength).toBe(size);
      }
      await vi.waitFor(async () => expect(header(await t.engine.handle(req("/named")), "cache-status")).toMatch(/hit/));
      const hit = await t.engine.handle(req("/named"));
      expect([header(hit, "x-a"), header(hit, "x-b"), header(hit, "x-c")]).toEqual([undefined, undefined, "3"]);
      expect(calls).toBe(1);
    },
  );

  it("a 304 that refreshes the copy: its request's answer carries what the 304 sent, the copy still goes without", async () => {
    const t = setup();
    t.origin.headers = named;
    expect(header(await t.engine.handle(req("/named")), "x-a")).toBe("1");
    t.clock.advance(61_000);
    const revalidated = await t.engine.handle(req("/named"));
    expect(header(revalidated, "cache-status")).toMatch(/fwd=stale; fwd-status=304/);
    expect([header(revalidated, "x-a"), header(revalidated, "x-b")]).toEqual(["1", "2"]);
    const hit = await t.engine.handle(req("/named"));
    expect(header(hit, "cache-status")).toMatch(/hit/);
    expect([header(hit, "x-a"), header(hit, "x-b"), header(hit, "x-c")]).toEqual([undefined, undefined, "3"]);
    expect(t.origin.calls).toHaveLength(2);
  });
});

describe("RFC 9211 §2.5: `stored` only for a response the cache stored", () => {
  const SIZE = 200_000;

  /** An origin whose body (past 64 KiB: it streams) the test sends, ends or cuts. */
  function streamingOrigin() {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const fetch: FetchLike = async () => {
      const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
      return new Response(body, { headers: { "cache-control": "max-age=60", "content-length": String(SIZE) } });
    };
    return {
      fetch,
      send: (bytes: number) => controller.enqueue(new Uint8Array(bytes)),
      end: () => controller.close(),
      cut: () => controller.error(new TypeError("terminated")),
    };
  }

  const read = (body: unknown) => new Response(body as ReadableStream<Uint8Array>).arrayBuffer();

  it("a body still arriving is not said to be stored, to its filler or its waiter; once whole it is, and the next request is a hit", async () => {
    const origin = streamingOrigin();
    const t = setup({}, origin.fetch);
    const [filler, waiter] = await Promise.all([t.engine.handle(req("/s")), t.engine.handle(req("/s"))]);
    expect([header(filler, "cache-status"), header(waiter, "cache-status")]).toEqual([
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60",
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60; collapsed",
    ]);
    origin.send(SIZE);
    origin.end();
    expect((await Promise.all([read(filler.body), read(waiter.body)])).map((b) => b.byteLength)).toEqual([SIZE, SIZE]);
    await vi.waitFor(async () =>
      expect(header(await t.engine.handle(req("/s")), "cache-status")).toMatch(/^herdless; hit/),
    );
  });

  it("a body the origin cuts short: its filler and waiter were told nothing was stored, and nothing is", async () => {
    const origin = streamingOrigin();
    const t = setup({}, origin.fetch);
    const [filler, waiter] = await Promise.all([t.engine.handle(req("/cut")), t.engine.handle(req("/cut"))]);
    for (const answer of [filler, waiter]) {
      expect(header(answer, "content-length")).toBe(String(SIZE));
      expect(header(answer, "cache-status")).not.toContain("stored");
    }
    origin.send(SIZE / 2);
    origin.cut();
    await expect(read(filler.body)).rejects.toThrow();
    await expect(read(waiter.body)).rejects.toThrow();
    const after = await t.engine.handle(req("/cut"));
    expect(header(after, "cache-status")).not.toMatch(/hit/);
  });
});

describe("RFC 9110 §14: Range served from the stored full response", () => {
  it("a Range on a cold key fills the whole response (no Range to the origin), answers 206, stores the 200", async () => {
    const t = setup();
    const part = await t.engine.handle(req("/r", { range: "bytes=0-1" }));
    expect(part.status).toBe(206);
    expect(text(part.body)).toBe("v1");
    expect(header(part, "content-range")).toBe("bytes 0-1/100");
    expect(t.origin.calls[0]!.headers.get("range")).toBeNull();
    const suffix = await t.engine.handle(req("/r", { range: "bytes=-3" }));
    expect(suffix.status).toBe(206);
    expect(text(suffix.body)).toBe("...");
    const full = await t.engine.handle(req("/r"));
    expect(full.status).toBe(200);
    expect((full.body as Uint8Array).byteLength).toBe(100);
    expect(t.origin.calls).toHaveLength(1);
  });

  it("unsatisfiable → 416 bytes */len; If-Range not matching → full 200", async () => {
    const t = setup();
    await t.engine.handle(req("/s"));
    const refused = await t.engine.handle(req("/s", { range: "bytes=100-" }));
    expect(refused.status).toBe(416);
    expect(header(refused, "content-range")).toBe("bytes */100");
    const changed = await t.engine.handle(req("/s", { range: "bytes=0-1", "if-range": '"v0"' }));
    expect(changed.status).toBe(200);
    const same = await t.engine.handle(req("/s", { range: "bytes=0-1", "if-range": '"v1"' }));
    expect(same.status).toBe(206);
  });
});

describe("RFC 9111 §5.2.1: request Cache-Control", () => {
  it("§5.2.1.7 only-if-cached: 504 when nothing is stored, the entry when it is; never the origin", async () => {
    const t = setup();
    const none = await t.engine.handle(req("/o", { "cache-control": "only-if-cached" }));
    expect(none.status).toBe(504);
    expect(t.origin.calls).toHaveLength(0);
    await t.engine.handle(req("/o"));
    const hit = await t.engine.handle(req("/o", { "cache-control": "only-if-cached" }));
    expect(hit.status).toBe(200);
    t.clock.advance(61_000);
    expect((await t.engine.handle(req("/o", { "cache-control": "only-if-cached" }))).status).toBe(504);
    expect(t.origin.calls).toHaveLength(1);
  });

  it("§5.2.1.7 only-if-cached: a stale copy is a 504 marked fwd=stale, never a uri-miss", async () => {
    const t = setup();
    await t.engine.handle(req("/os"));
    t.clock.advance(61_000);
    const stale = await t.engine.handle(req("/os", { "cache-control": "only-if-cached" }));
    expect(stale.status).toBe(504);
    expect(header(stale, "cache-status")).toBe("herdless; fwd=stale");
    expect(t.origin.calls).toHaveLength(1);
  });

  it("§5.2.1.7 honorRequestNoCache: no-cache or max-age=0 with only-if-cached is a 504, never an origin request", async () => {
    const t = setup({ defaults: { honorRequestNoCache: true } });
    await t.engine.handle(req("/oh"));
    t.clock.advance(1_000);
    for (const cc of ["no-cache, only-if-cached", "max-age=0, only-if-cached"]) {
      const res = await t.engine.handle(req("/oh", { "cache-control": cc }));
      expect(res.status).toBe(504);
      expect(header(res, "cache-status")).toBe("herdless; fwd=request");
    }
    // A copy young enough for the client's max-age still answers.
    const young = await t.engine.handle(req("/oh", { "cache-control": "max-age=30, only-if-cached" }));
    expect(young.status).toBe(200);
    expect(t.origin.calls).toHaveLength(1);
  });

  it("by default no-cache, max-age=0 and Pragma: no-cache are answered from the cache (a reload cannot reach the origin)", async () => {
    const t = setup();
    await t.engine.handle(req("/n"));
    const reloads: Record<string, string>[] = [
      { "cache-control": "no-cache" },
      { "cache-control": "max-age=0" },
      { pragma: "no-cache" },
    ];
    for (const headers of reloads) {
      const res = await t.engine.handle(req("/n", headers));
      expect(header(res, "cache-status")).toMatch(/^herdless; hit/);
    }
    expect(t.origin.calls).toHaveLength(1);
  });

  it("honorRequestNoCache: no-cache revalidates through the coordinator, one origin request for many clients", async () => {
    const t = setup({ defaults: { honorRequestNoCache: true } });
    await t.engine.handle(req("/h"));
    t.clock.advance(1_000);
    let open!: () => void;
    t.origin.gate = new Promise((resolve) => (open = resolve));
    const reloads = Array.from({ length: 20 }, () => t.engine.handle(req("/h", { "cache-control": "no-cache" })));
    await new Promise((resolve) => setTimeout(resolve, 0));
    open();
    const answers = await Promise.all(reloads);
    expect(t.origin.calls).toHaveLength(2);
    // The revalidation is conditional: the origin confirms with a 304.
    expect(t.origin.calls[1]!.headers.get("if-none-match")).toBe('"v1"');
    expect(answers.every((a) => a.status === 200 && header(a, "cache-status")!.includes("fwd=request"))).toBe(true);
    // A plain request is still a hit.
    expect(header(await t.engine.handle(req("/h")), "cache-status")).toMatch(/^herdless; hit/);
    t.origin.gate = undefined;
    t.clock.advance(1_000);
    await t.engine.handle(req("/h", { "cache-control": "max-age=0" }));
    expect(t.origin.calls).toHaveLength(3);
  });
});

describe("RFC 9111 §4.4: unsafe methods invalidate, at the edge and at the coordinator", () => {
  it("a successful POST drops the coordinator's copy too, and the same-origin Location target", async () => {
    const t = setup();
    await t.engine.handle(req("/cart"));
    await t.engine.handle(req("/cart/1"));
    await t.engine.handle(req("/elsewhere"));
    t.origin.version = 2;
    t.origin.headers = { location: "/cart/1", "content-location": "https://other.test/elsewhere" };
    const post = await t.engine.handle(req("/cart", {}, "POST"));
    expect(post.status).toBe(200);
    t.origin.headers = {};
    // What stays under each key is the invalidation's mark, never served (lookup.ts invalidateStored).
    const servable = async (store: Store, key: string) => {
      const atKey = await store.get(key);
      return notInvalidated(atKey, atKey);
    };
    expect(await servable(t.shared, "GET https://site.test/cart")).toBeUndefined();
    expect(await servable(t.near, "GET https://site.test/cart")).toBeUndefined();
    expect(await servable(t.shared, "GET https://site.test/cart/1")).toBeUndefined();
    const after = await t.engine.handle(req("/cart"));
    expect(text(after.body)).toMatch(/^v2 \/cart/);
    expect(text((await t.engine.handle(req("/cart/1"))).body)).toMatch(/^v2 \/cart\/1/);
    // Another origin's URL is never touched.
    expect(text((await t.engine.handle(req("/elsewhere"))).body)).toMatch(/^v1 /);
  });

  it("a Vary'd page's mark outlives its longest-kept variant: an old variant never comes back after the POST", async () => {
    // The English page is kept for two days, the French one for seconds: the mark, written
    // over the Vary pointer the French fill left, once lived only as long as the French page.
    let version = 1;
    const calls: string[] = [];
    const t = setup({}, async (url, init) => {
      const language = new Headers(init.headers).get("accept-language") ?? "";
      calls.push(`${init.method ?? "GET"} ${language}`);
      const maxAge = language === "en" ? 2 * 86_400 : 1;
      return new Response(`v${version} ${language}`, {
        headers: { vary: "accept-language", "cache-control": `max-age=${maxAge}` },
      });
    });
    await t.engine.handle(req("/page", { "accept-language": "en" }));
    await t.engine.handle(req("/page", { "accept-language": "fr" }));
    version = 2;
    expect((await t.engine.handle(req("/page", {}, "POST"))).status).toBe(200);
    // A day and more later: the French copy (and its retention) is long gone, the English
    // copy stored before the POST would still be fresh.
    t.clock.advance(25 * 3_600_000);
    expect(text((await t.engine.handle(req("/page", { "accept-language": "fr" }))).body)).toBe("v2 fr");
    const english = await t.engine.handle(req("/page", { "accept-language": "en" }));
    expect(text(english.body)).toBe("v2 en");
    expect(header(english, "cache-status")).toMatch(/fwd=vary-miss/);
    expect(calls).toEqual(["GET en", "GET fr", "POST ", "GET fr", "GET en"]);
  });

  it("an error answer to an unsafe method invalidates nothing", async () => {
    const t = setup();
    await t.engine.handle(req("/keep"));
    t.origin.status = 409;
    await t.engine.handle(req("/keep", {}, "PUT"));
    expect(await t.shared.get("GET https://site.test/keep")).toBeDefined();
  });
});

describe("methods and statuses herdless never relays", () => {
  it("RFC 9110 §9.3.8: TRACE and TRACK → 405 answered locally, never forwarded", async () => {
    const t = setup();
    for (const method of ["TRACE", "TRACK"]) {
      const res = await t.engine.handle(req("/t", { authorization: "secret" }, method));
      expect(res.status).toBe(405);
      expect(header(res, "allow")).toBeDefined();
    }
    expect(t.origin.calls).toHaveLength(0);
  });

  it("RFC 9110 §7.6.2: an OPTIONS with Max-Forwards 0 is answered here; a higher count reaches the origin one lower", async () => {
    const t = setup();
    const here = await t.engine.handle(req("/o", { "max-forwards": "0" }, "OPTIONS"));
    expect(here.status).toBe(200);
    expect(header(here, "allow")).toContain("OPTIONS");
    expect(t.origin.calls).toHaveLength(0);
    await t.engine.handle(req("/o", { "max-forwards": "5" }, "OPTIONS"));
    expect(t.origin.calls[0]?.headers.get("max-forwards")).toBe("4");
    // Not a count: passed on untouched. Other methods: Max-Forwards means nothing to them.
    await t.engine.handle(req("/o", { "max-forwards": "zero" }, "OPTIONS"));
    expect(t.origin.calls[1]?.headers.get("max-forwards")).toBe("zero");
    await t.engine.handle(req("/p", { "max-forwards": "0" }, "POST"));
    expect(t.origin.calls[2]?.headers.get("max-forwards")).toBe("0");
  });

  it.each([
    [101, "a final 1xx"],
    [103, "an interim status as the final answer"],
    [600, "a status past 599"],
  ])("RFC 9110 §15: origin status %i (%s) → a clean 502", async (code) => {
    // Response refuses such statuses; a runtime's fetch can still hand them over.
    const { engine } = setup(
      {},
      async () => ({ status: code, headers: new Headers(), body: null }) as unknown as Response,
    );
    expect((await engine.handle(req("/x"))).status).toBe(502);
    expect((await engine.handle(req("/x", {}, "POST"))).status).toBe(502);
  });
});
