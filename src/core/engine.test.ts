import { describe, expect, it, beforeEach } from "vitest";
import { ManualClock } from "./clock.ts";
import { parseConfig, type ConfigInput } from "./config.ts";
import { Engine, type EngineRequest } from "./engine.ts";
import { KeyCoordinator } from "./fill/key-coordinator.ts";
import { LocalGuard } from "./guard/local-guard.ts";
import { MemoryLeaseManager } from "./fill/memory-lease.ts";
import { LruStore } from "./store/lru-store.ts";
import type { FetchLike } from "./origin/origin-client.ts";
import { LocalPurgeRegistry } from "./admin/purge.ts";
import { primaryKey } from "./http/key.ts";

/** A scripted origin: counts calls, answers per path, honours If-None-Match. */
class FakeOrigin {
  calls: { url: string; headers: Headers }[] = [];
  version = 1;
  status = 200;
  cacheControl = "max-age=10, stale-while-revalidate=20, stale-if-error=60";
  extra: Record<string, string> = {};
  errorHeaders: Record<string, string> = {};
  /** Extra headers on a 304 (what a revalidation answer adds to the stored response). */
  notModified: Record<string, string> = {};
  gate: Promise<void> | undefined;
  fail: "network" | undefined;
  /** Calls from this one on (0-based) fail as `fail: "network"` does. */
  failFrom: number | undefined;
  /** Interim answers sent before each final one, once the gate opens (a waiter has joined by then). */
  interim: [number, Record<string, string>][] = [];

  fetch: FetchLike = async (url, init) => {
    const headers = new Headers(init.headers);
    this.calls.push({ url, headers });
    const failing = this.failFrom !== undefined && this.calls.length > this.failFrom;
    if (this.gate) await this.gate;
    for (const [code, fields] of this.interim) init.onInterim?.(code, new Headers(fields));
    if (this.fail || failing) throw new TypeError("fetch failed");
    const etag = `"v${this.version}"`;
    if (this.status !== 200) return new Response("origin error", { status: this.status, headers: this.errorHeaders });
    if (headers.get("if-none-match") === etag)
      return new Response(null, {
        status: 304,
        // A field given as "" is left out (a 304 without Cache-Control).
        headers: withoutEmpty({ etag, "cache-control": this.cacheControl, ...this.notModified }),
      });
    const body = `v${this.version} ${new URL(url).pathname} ${headers.get("accept-language") ?? ""}`;
    return new Response(body, {
      status: 200,
      headers: { etag, "cache-control": this.cacheControl, "content-length": String(body.length), ...this.extra },
    });
  };
}

function withoutEmpty(fields: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== ""));
}

/** `tiers: "two"` gives the coordinator its own store (Redis, a Durable Object) behind the near tier. */
function setup(overrides: Partial<ConfigInput> = {}, tiers: "one" | "two" = "one") {
  const clock = new ManualClock(1_700_000_000_000);
  const config = parseConfig({ origin: { url: "http://origin.test" }, ...overrides });
  const origin = new FakeOrigin();
  const store = new LruStore({ maxBytes: 1 << 26, clock });
  const shared = tiers === "two" ? new LruStore({ maxBytes: 1 << 26, clock }) : store;
  const guard = new LocalGuard({ config, clock });
  const background: Promise<unknown>[] = [];
  const coordinator = new KeyCoordinator({
    config,
    clock,
    store: shared,
    leases: new MemoryLeaseManager(clock),
    guard,
    fetch: origin.fetch,
    background: (p) => background.push(p),
  });
  const purges = new LocalPurgeRegistry(clock, (url) => [
    `GET ${new URL(url).protocol}//${new URL(url).host}${new URL(url).pathname}`,
  ]);
  const engine = readingBodies(
    new Engine({
      config,
      clock,
      near: store,
      coordinator,
      guard,
      fetch: origin.fetch,
      background: (p) => background.push(p),
      purges: () => purges.current(),
    }),
  );
  const settle = async () => {
    while (background.length) await background.shift();
  };
  return { clock, origin, engine, settle, store, shared, purges };
}

/** Reads streamed bodies whole, as a client would, so tests compare bytes. */
function readingBodies(engine: Engine): Pick<Engine, "handle"> {
  return {
    async handle(request) {
      const res = await engine.handle(request);
      if (res.body instanceof ReadableStream) res.body = new Uint8Array(await new Response(res.body).arrayBuffer());
      return res;
    },
  };
}

function get(path: string, headers: Record<string, string> = {}, method = "GET"): EngineRequest {
  const h = new Headers(headers);
  return {
    method,
    url: new URL(`https://site.test${path}`),
    headers: h,
    rawHeaders: Object.entries(headers).map(([n, v]) => [n.toLowerCase(), v]),
  };
}

const KEY_A = primaryKey(new URL("https://site.test/a"), { ignoreQuery: [], ignoreAllQuery: false });
const text = (body: unknown) => new TextDecoder().decode(body as Uint8Array);
const status = (res: { headers: [string, string][] }) => res.headers.find(([n]) => n === "cache-status")?.[1];

describe("engine", () => {
  let t: ReturnType<typeof setup>;
  beforeEach(() => {
    t = setup();
  });

  it("MISS then HIT, one origin request", async () => {
    const first = await t.engine.handle(get("/a"));
    expect(status(first)).toBe("herdless; fwd=uri-miss; fwd-status=200; ttl=10; stored");
    const second = await t.engine.handle(get("/a"));
    expect(status(second)).toBe("herdless; hit; ttl=10");
    expect(text(second.body)).toBe("v1 /a ");
    expect(t.origin.calls).toHaveLength(1);
  });

  it("Age grows with time on hits", async () => {
    await t.engine.handle(get("/a"));
    t.clock.advance(3_500);
    const res = await t.engine.handle(get("/a"));
    expect(res.headers).toContainEqual(["age", "3"]);
  });

  it("collapses 200 concurrent cold misses onto one origin request", async () => {
    let open!: () => void;
    t.origin.gate = new Promise((r) => (open = r));
    const all = Array.from({ length: 200 }, () => t.engine.handle(get("/hot")));
    await new Promise((r) => setTimeout(r, 0));
    open();
    const results = await Promise.all(all);
    expect(t.origin.calls).toHaveLength(1);
    expect(results.every((r) => r.status === 200 && text(r.body) === "v1 /hot ")).toBe(true);
    expect(results.filter((r) => r.cacheStatus.collapsed)).toHaveLength(199);
  });

  describe("RFC 9211 §2.6: every request that waited on another's fetch says `collapsed`, whatever the fetch brought", () => {
    /** Five requests for `path` while one fetch is at the origin: the leader's answer first. */
    async function fiveOnOneFetch(path: string) {
      let open!: () => void;
      t.origin.gate = new Promise((r) => (open = r));
      const all = Array.from({ length: 5 }, () => t.engine.handle(get(path)));
      await new Promise((r) => setTimeout(r, 0));
      t.origin.gate = undefined;
      open();
      return Promise.all(all);
    }
    const statuses = (answers: { headers: [string, string][] }[]) => answers.map((a) => status(a));

    it("an origin 5xx without freshness, relayed to every waiter: the leader's says nothing of it, the 4 waiters' say `collapsed`", async () => {
      t.origin.status = 503;
      const answers = await fiveOnOneFetch("/down");
      expect(t.origin.calls).toHaveLength(1);
      expect(answers.map((a) => [a.status, text(a.body)])).toEqual(Array(5).fill([503, "origin error"]));
      expect(statuses(answers)).toEqual([
        "herdless; fwd=uri-miss; fwd-status=503; detail=origin-error",
        ...Array(4).fill("herdless; fwd=uri-miss; fwd-status=503; collapsed; detail=origin-error"),
      ]);
    });

    it("an origin that cannot be reached: 5 × 502, the 4 waiters `collapsed`", async () => {
      t.origin.fail = "network";
      const answers = await fiveOnOneFetch("/gone");
      expect(t.origin.calls).toHaveLength(1);
      expect(answers.map((a) => a.status)).toEqual([502, 502, 502, 502, 502]);
      expect(statuses(answers)).toEqual([
        "herdless; fwd=uri-miss; detail=origin-error",
        ...Array(4).fill("herdless; fwd=uri-miss; collapsed; detail=origin-error"),
      ]);
    });

    it("a failed revalidation hidden by stale-if-error: 5 × the stale copy, the 4 waiters `collapsed`", async () => {
      await t.engine.handle(get("/a"));
      // Past max-age (10 s) and stale-while-revalidate (20 s), inside stale-if-error (60 s).
      t.clock.advance(35_000);
      t.origin.fail = "network";
      const answers = await fiveOnOneFetch("/a");
      expect(t.origin.calls).toHaveLength(2);
      expect(answers.map((a) => [a.status, text(a.body)])).toEqual(Array(5).fill([200, "v1 /a "]));
      expect(statuses(answers)).toEqual([
        "herdless; fwd=stale; ttl=-25; detail=stale-if-error",
        ...Array(4).fill("herdless; fwd=stale; ttl=-25; collapsed; detail=stale-if-error"),
      ]);
    });

    it("a request that fetched alone and failed is never `collapsed`", async () => {
      t.origin.fail = "network";
      expect(status(await t.engine.handle(get("/gone")))).toBe("herdless; fwd=uri-miss; detail=origin-error");
      await t.engine.handle(get("/b"));
      t.clock.advance(35_000);
      expect(status(await t.engine.handle(get("/b")))).toBe("herdless; fwd=uri-miss; detail=origin-error");
    });
  });

  describe("RFC 9111 §4: an answer that must be validated before any reuse is its requester's alone", () => {
    /** The leader's request, then the waiter's while the leader's fetch runs; both answers. */
    async function leaderAndWaiter(leader: Record<string, string>, waiter: Record<string, string> = {}) {
      let open!: () => void;
      t.origin.gate = new Promise((r) => (open = r));
      const first = t.engine.handle(get("/api/me", leader));
      await new Promise((r) => setTimeout(r, 0));
      const second = t.engine.handle(get("/api/me", waiter));
      await new Promise((r) => setTimeout(r, 0));
      t.origin.gate = undefined;
      open();
      return Promise.all([first, second]);
    }

    it.each(["no-cache", "max-age=0", "max-age=0, must-revalidate", "max-age=0, stale-while-revalidate=0"])(
      "attack: a %s answer to the victim's fetch is never the request that joined it",
      async (cacheControl) => {
        t.origin.cacheControl = cacheControl;
        // The origin answers by a header it does not name in Vary: the victim's language, say.
        const [victim, attacker] = await leaderAndWaiter({ "accept-language": "victim-only" });
        expect(text(victim.body)).toBe("v1 /api/me victim-only");
        expect(text(attacker.body)).toBe("v1 /api/me ");
        expect(attacker.cacheStatus.collapsed).toBeUndefined();
        expect(t.origin.calls).toHaveLength(2);
        // Its revalidation is each request's own too: a 304 to one request's validation is not another's.
        const [again, other] = await leaderAndWaiter({});
        expect(again.cacheStatus.fwd).toBe("stale");
        expect(other.cacheStatus.collapsed).toBeUndefined();
        expect(t.origin.calls).toHaveLength(4);
      },
    );

    it("a request sent on alone that finds the origin down gets the copy stale-if-error allows, as a waiter would", async () => {
      t.origin.cacheControl = "max-age=0, stale-if-error=60";
      await t.engine.handle(get("/api/me"));
      // The leader's revalidation is answered; the waiter's own request finds the origin gone.
      t.origin.failFrom = 2;
      const [leader, waiter] = await leaderAndWaiter({});
      expect(leader.cacheStatus.fwdStatus).toBe(304);
      expect(waiter.status).toBe(200);
      expect(text(waiter.body)).toBe("v1 /api/me ");
      expect(waiter.cacheStatus).toMatchObject({ fwd: "stale", detail: "stale-if-error" });
      expect(t.origin.calls).toHaveLength(3);
    });

    it("a stale answer stale-while-revalidate lets be served is shared with its waiters, as later requests get it", async () => {
      t.origin.cacheControl = "max-age=0, stale-while-revalidate=30";
      const [leader, waiter] = await leaderAndWaiter({});
      expect(text(waiter.body)).toBe(text(leader.body));
      expect(waiter.cacheStatus.collapsed).toBe(true);
      expect(t.origin.calls).toHaveLength(1);
    });
  });

  it("serves stale at once inside stale-while-revalidate and revalidates once with a conditional request (304)", async () => {
    await t.engine.handle(get("/a"));
    t.clock.advance(12_000);
    const stale = await Promise.all(Array.from({ length: 20 }, () => t.engine.handle(get("/a"))));
    expect(stale.every((r) => r.cacheStatus.detail === "stale-while-revalidate" && text(r.body) === "v1 /a ")).toBe(
      true,
    );
    await t.settle();
    expect(t.origin.calls).toHaveLength(2);
    expect(t.origin.calls[1]!.headers.get("if-none-match")).toBe('"v1"');
    const fresh = await t.engine.handle(get("/a"));
    expect(status(fresh)).toBe("herdless; hit; ttl=10");
  });

  it("fetches the new body when the validator no longer matches", async () => {
    await t.engine.handle(get("/a"));
    t.origin.version = 2;
    t.clock.advance(31_000);
    const res = await t.engine.handle(get("/a"));
    expect(res.cacheStatus.fwd).toBe("stale");
    expect(text(res.body)).toBe("v2 /a ");
  });

  it("hides a 503 inside stale-if-error, and relays it past the window", async () => {
    await t.engine.handle(get("/a"));
    t.origin.status = 503;
    t.clock.advance(35_000);
    const hidden = await t.engine.handle(get("/a"));
    expect(hidden.status).toBe(200);
    expect(status(hidden)).toBe("herdless; fwd=stale; fwd-status=503; ttl=-25; detail=stale-if-error");
    t.clock.advance(40_000);
    const shown = await t.engine.handle(get("/a"));
    expect(shown.status).toBe(503);
  });

  it("hides a network failure too", async () => {
    await t.engine.handle(get("/a"));
    t.origin.fail = "network";
    t.clock.advance(35_000);
    const res = await t.engine.handle(get("/a"));
    expect(res.status).toBe(200);
    expect(res.cacheStatus.detail).toBe("stale-if-error");
  });

  it("never shares a response with Set-Cookie, private or no-store", async () => {
    for (const [path, header] of [
      ["/cookie", { "set-cookie": "s=1" }],
      ["/private", { "cache-control": "private, max-age=60" }],
      ["/nostore", { "cache-control": "no-store" }],
    ] as const) {
      t.origin.extra = header;
      await t.engine.handle(get(path));
      const again = await t.engine.handle(get(path));
      expect(again.cacheStatus.hit).toBeFalsy();
    }
    expect(t.origin.calls).toHaveLength(6);
  });

  it("bypasses requests with a Cookie and never stores their answer", async () => {
    const res = await t.engine.handle(get("/a", { cookie: "sid=1" }));
    expect(status(res)).toContain("fwd=bypass");
    expect((await t.engine.handle(get("/a"))).cacheStatus.fwd).toBe("uri-miss");
  });

  describe("RFC 9111 §3.5 responses to requests with Authorization", () => {
    it("goes to the origin with the credentials and shares nothing the response does not allow", async () => {
      const res = await t.engine.handle(get("/a", { authorization: "Bearer x" }));
      expect(res.status).toBe(200);
      expect(t.origin.calls[0]!.headers.get("authorization")).toBe("Bearer x");
      expect((await t.engine.handle(get("/a"))).cacheStatus.fwd).toBe("uri-miss");
      expect(t.origin.calls[1]!.headers.get("authorization")).toBeNull();
    });

    it.each(["public, max-age=60", "s-maxage=60", "max-age=60, must-revalidate"])(
      "stores the answer when it says %s, and serves it to the next request",
      async (cacheControl) => {
        t.origin.cacheControl = cacheControl;
        await t.engine.handle(get("/a", { authorization: "Bearer x" }));
        const next = await t.engine.handle(get("/a"));
        expect(next.cacheStatus.hit).toBe(true);
        expect(t.origin.calls).toHaveLength(1);
      },
    );

    it.each(["max-age=60", "public, max-age=60"])(
      "attack: a signed-in request arriving while an anonymous fetch runs never takes that fetch's answer (%s): it asks the origin with its own credentials",
      async (cacheControl) => {
        t.origin.cacheControl = cacheControl;
        let open!: () => void;
        t.origin.gate = new Promise((r) => (open = r));
        const anonymous = t.engine.handle(get("/a"));
        await new Promise((r) => setTimeout(r, 0));
        const signedIn = t.engine.handle(get("/a", { authorization: "Bearer victim" }));
        await new Promise((r) => setTimeout(r, 0));
        open();
        const [, own] = await Promise.all([anonymous, signedIn]);
        expect(own.cacheStatus.collapsed).not.toBe(true);
        expect(t.origin.calls.map((call) => call.headers.get("authorization"))).toEqual([null, "Bearer victim"]);
      },
    );

    it("never answers a request with Authorization from a stored copy, nor evicts that copy", async () => {
      await t.engine.handle(get("/a"));
      const res = await t.engine.handle(get("/a", { authorization: "Bearer x" }));
      expect(res.cacheStatus.hit).not.toBe(true);
      expect(t.origin.calls).toHaveLength(2);
      t.origin.version = 2; // the personal answer is a 200, not shareable: the shared copy stays
      await t.engine.handle(get("/a", { authorization: "Bearer x" }));
      const anonymous = await t.engine.handle(get("/a"));
      expect(anonymous.cacheStatus.hit).toBe(true);
      expect(text(anonymous.body)).toBe("v1 /a ");
    });
  });

  it("keeps variants apart by Vary and never serves one for another", async () => {
    t.origin.extra = { vary: "Accept-Language" };
    const fr = await t.engine.handle(get("/v", { "accept-language": "fr" }));
    const de = await t.engine.handle(get("/v", { "accept-language": "de" }));
    expect(de.cacheStatus.fwd).toBe("vary-miss");
    expect(text(fr.body)).toBe("v1 /v fr");
    expect(text(de.body)).toBe("v1 /v de");
    expect(text((await t.engine.handle(get("/v", { "accept-language": "fr" }))).body)).toBe("v1 /v fr");
    expect(t.origin.calls).toHaveLength(2);
  });

  it("a header outside the key cannot change what is served", async () => {
    await t.engine.handle(get("/a", { "x-forwarded-host": "evil.test" }));
    expect(t.origin.calls[0]!.headers.get("x-forwarded-host")).toBeNull();
  });

  it("answers HEAD from the GET entry without a body", async () => {
    await t.engine.handle(get("/a"));
    const head = await t.engine.handle(get("/a", {}, "HEAD"));
    expect(head.body).toBeNull();
    expect(head.cacheStatus.hit).toBe(true);
  });

  it("RFC 9111 §4.4: a successful POST invalidates the URL", async () => {
    await t.engine.handle(get("/a"));
    const post = await t.engine.handle(get("/a", {}, "POST"));
    expect(post.cacheStatus.fwd).toBe("method");
    expect((await t.engine.handle(get("/a"))).cacheStatus.fwd).toBe("uri-miss");
  });

  it("RFC 9111 §4.2.2: a 5xx without explicit freshness is given to its own request and nobody after", async () => {
    t.origin.status = 500;
    expect((await t.engine.handle(get("/down"))).status).toBe(500);
    const again = await t.engine.handle(get("/down"));
    expect(again.status).toBe(500);
    expect(again.cacheStatus.detail).not.toBe("negative");
    expect(t.origin.calls).toHaveLength(2);
  });

  it("RFC 9111 §3: a 5xx with explicit freshness is stored and served like any response", async () => {
    t.origin.status = 503;
    t.origin.errorHeaders = { "cache-control": "max-age=30" };
    expect((await t.engine.handle(get("/maint"))).status).toBe(503);
    const again = await t.engine.handle(get("/maint"));
    expect(again.status).toBe(503);
    expect(again.cacheStatus.hit).toBe(true);
    expect(t.origin.calls).toHaveLength(1);
  });

  it("RFC 5861 §4: a stale-if-error copy still hides a 5xx that carries explicit freshness", async () => {
    await t.engine.handle(get("/a"));
    t.clock.advance(31_000); // past stale-while-revalidate, inside stale-if-error
    t.origin.status = 500;
    t.origin.errorHeaders = { "cache-control": "max-age=30" };
    const res = await t.engine.handle(get("/a"));
    expect(res.status).toBe(200);
    expect(res.cacheStatus.detail).toBe("stale-if-error");
  });

  describe("RFC 9111 §4.3.4: a 304 refreshes an entry through the same storability rules as a 200", () => {
    const header = (res: { headers: [string, string][] }, name: string) =>
      res.headers.filter(([n]) => n === name).map(([, v]) => v);

    it("attack: a Set-Cookie on a 304 reaches the client that asked, never the next visitor", async () => {
      await t.engine.handle(get("/p"));
      t.clock.advance(31_000); // stale, past stale-while-revalidate: the next request revalidates
      t.origin.notModified = { "set-cookie": "session=attacker-triggered" };
      const attacker = await t.engine.handle(get("/p"));
      expect(header(attacker, "set-cookie")).toEqual(["session=attacker-triggered"]);
      t.origin.notModified = {};
      const victim = await t.engine.handle(get("/p"));
      expect(header(victim, "set-cookie")).toEqual([]);
      expect(t.origin.calls).toHaveLength(3); // the entry was removed: the victim's answer is the origin's own
    });

    it.each([
      ["private", { "cache-control": "private, max-age=60" }],
      ["no-store", { "cache-control": "no-store" }],
      ["Vary: *", { vary: "*" }],
    ])("a 304 that says %s removes the entry and answers that client alone", async (_, notModified) => {
      await t.engine.handle(get("/p"));
      t.clock.advance(31_000);
      t.origin.notModified = notModified;
      const first = await t.engine.handle(get("/p"));
      expect(first.status).toBe(200);
      expect(first.cacheStatus.stored).not.toBe(true);
      t.origin.notModified = {};
      const next = await t.engine.handle(get("/p"));
      expect(next.cacheStatus.hit).not.toBe(true);
      expect(t.origin.calls).toHaveLength(3);
      expect(t.origin.calls[2]!.headers.get("if-none-match")).toBeNull();
    });

    it("attack: RFC 9111 §3.5: a 304 to a signed-in request is merged into the shared copy only when it says public itself", async () => {
      t.origin.cacheControl = "public, max-age=10";
      await t.engine.handle(get("/p"));
      t.clock.advance(11_000);
      // A 304 with no Cache-Control of its own: merged, it would take the copy's `public`.
      t.origin.notModified = { "cache-control": "", "x-user": "attacker" };
      const attacker = await t.engine.handle(get("/p", { authorization: "Bearer attacker" }));
      expect(header(attacker, "x-user")).toEqual(["attacker"]);
      t.origin.notModified = {};
      const victim = await t.engine.handle(get("/p"));
      expect(header(victim, "x-user")).toEqual([]);
      expect(t.origin.calls).toHaveLength(3);
      // A 304 that says public itself refreshes the copy for everyone, as RFC 9111 §3.5 allows.
      t.clock.advance(11_000);
      t.origin.notModified = { "x-updated": "1" };
      await t.engine.handle(get("/p", { authorization: "Bearer ann" }));
      const next = await t.engine.handle(get("/p"));
      expect(next.cacheStatus.hit).toBe(true);
      expect(header(next, "x-updated")).toEqual(["1"]);
    });

    it("a storable 304 refreshes the entry (no cookie, new freshness)", async () => {
      await t.engine.handle(get("/p"));
      t.clock.advance(31_000);
      t.origin.notModified = { "x-updated": "1" };
      const refreshed = await t.engine.handle(get("/p"));
      expect(header(refreshed, "x-updated")).toEqual(["1"]);
      const hit = await t.engine.handle(get("/p"));
      expect(hit.cacheStatus.hit).toBe(true);
      expect(header(hit, "x-updated")).toEqual(["1"]);
      expect(t.origin.calls).toHaveLength(2);
    });
  });

  it("caches an origin error briefly when the operator opts in (origin.errorTtlMs)", async () => {
    t = setup({ origin: { url: "http://origin.test", errorTtlMs: 2_000 } });
    t.origin.status = 500;
    expect((await t.engine.handle(get("/down"))).status).toBe(500);
    const again = await t.engine.handle(get("/down"));
    expect(again.status).toBe(500);
    expect(again.cacheStatus.detail).toBe("negative");
    expect(t.origin.calls).toHaveLength(1);
    t.clock.advance(2_000);
    await t.engine.handle(get("/down"));
    expect(t.origin.calls).toHaveLength(2);
  });

  it("never caches one client's origin error for others, opt-in or not (Set-Cookie, private, the request's Authorization)", async () => {
    t = setup({ origin: { url: "http://origin.test", errorTtlMs: 2_000 } });
    t.origin.status = 500;
    const cases: [string, Record<string, string>, Record<string, string>][] = [
      ["/cookie", { "set-cookie": "session=victim" }, {}],
      ["/private", { "cache-control": "private" }, {}],
      ["/auth", {}, { authorization: "Bearer victim" }],
    ];
    for (const [path, errorHeaders, requestHeaders] of cases) {
      t.origin.errorHeaders = errorHeaders;
      expect((await t.engine.handle(get(path, requestHeaders))).status, path).toBe(500);
      t.origin.errorHeaders = {};
      const next = await t.engine.handle(get(path));
      expect(next.cacheStatus.detail, path).not.toBe("negative");
    }
    expect(t.origin.calls).toHaveLength(6);
  });

  describe("a good copy always beats an error", () => {
    // The coordinator's store lost the entry (Redis restarted empty, a Durable Object was
    // reset) while this edge still holds a good copy; the origin now answers 503, so the
    // coordinator caches the error (the operator opted in to negative caching) and hands it
    // to every edge that asks next.
    async function sharedCopyLost() {
      const two = setup({ origin: { url: "http://origin.test", errorTtlMs: 2_000 } }, "two");
      await two.engine.handle(get("/a"));
      await two.shared.delete(KEY_A);
      two.origin.status = 503;
      return two;
    }

    it("a background refresh that brings back a cached error leaves the near copy in place", async () => {
      const two = await sharedCopyLost();
      two.clock.advance(15_000); // stale, inside stale-while-revalidate (20 s) and stale-if-error (60 s)
      for (let i = 0; i < 3; i++) {
        const res = await two.engine.handle(get("/a"));
        expect(res.status).toBe(200);
        expect(text(res.body)).toBe("v1 /a ");
        await two.settle();
      }
      // The first refresh cached the 503 in the coordinator's store; the later ones were answered with it.
      expect(two.origin.calls).toHaveLength(2);
      expect((await two.shared.get(KEY_A))?.negative).toBe(true);
      expect((await two.store.get(KEY_A))?.negative).toBe(false);
    });

    it("a revalidation answered with a cached error serves the near copy as stale-if-error", async () => {
      const two = await sharedCopyLost();
      two.clock.advance(35_000); // past stale-while-revalidate, inside stale-if-error
      const first = await two.engine.handle(get("/a"));
      expect(status(first)).toBe("herdless; fwd=stale; fwd-status=503; ttl=-25; detail=stale-if-error");
      const second = await two.engine.handle(get("/a")); // the coordinator answers with its cached 503
      expect(second.status).toBe(200);
      expect(text(second.body)).toBe("v1 /a ");
      expect(status(second)).toBe("herdless; fwd=stale; fwd-status=503; ttl=-25; detail=stale-if-error");
      expect(two.origin.calls).toHaveLength(2);
    });

    it("an edge with no copy of its own gets the cached error", async () => {
      const two = await sharedCopyLost();
      two.clock.advance(35_000);
      await two.engine.handle(get("/a"));
      await two.store.delete(KEY_A);
      const res = await two.engine.handle(get("/a"));
      expect(res.status).toBe(503);
      expect(res.cacheStatus.detail).toBe("negative");
    });
  });

  describe("purge", () => {
    it("hard purge by URL: the purged version is never served again", async () => {
      await t.engine.handle(get("/a"));
      t.origin.version = 2;
      await t.purges.purge({ urls: ["https://site.test/a"] });
      t.clock.advance(1);
      const res = await t.engine.handle(get("/a"));
      expect(res.cacheStatus.fwd).toBe("uri-miss");
      expect(text(res.body)).toBe("v2 /a ");
      expect(t.origin.calls[1]!.headers.get("if-none-match")).toBeNull();
    });

    it("hard purge is not undone by stale-if-error", async () => {
      await t.engine.handle(get("/a"));
      await t.purges.purge({ all: true });
      t.clock.advance(1);
      t.origin.status = 503;
      expect((await t.engine.handle(get("/a"))).status).toBe(503);
    });

    it("soft purge by tag: served stale while exactly one revalidation per key runs", async () => {
      t.origin.extra = { "cache-tag": "product" };
      await t.engine.handle(get("/a"));
      await t.engine.handle(get("/b"));
      t.clock.advance(1);
      await t.purges.purge({ tags: ["product"], soft: true });
      t.clock.advance(1);
      const served = await Promise.all(Array.from({ length: 30 }, (_, i) => t.engine.handle(get(i % 2 ? "/a" : "/b"))));
      expect(
        served.every((r) => r.status === 200 && r.cacheStatus.hit && r.cacheStatus.detail === "stale-while-revalidate"),
      ).toBe(true);
      await t.settle();
      expect(t.origin.calls).toHaveLength(4);
      expect((await t.engine.handle(get("/a"))).cacheStatus.detail).toBeUndefined();
    });

    it("soft purge while the page is being fetched: a request after the purge returned that joins that fetch gets its page as the soft-purged copy it is (stale, one revalidation behind it), never as fresh", async () => {
      let open!: () => void;
      t.origin.gate = new Promise((r) => (open = r));
      const leader = t.engine.handle(get("/a"));
      await new Promise((r) => setTimeout(r, 0));
      expect(t.origin.calls).toHaveLength(1);
      t.clock.advance(1);
      await t.purges.purge({ urls: ["https://site.test/a"], soft: true });
      t.clock.advance(1);
      const joiner = t.engine.handle(get("/a"));
      await new Promise((r) => setTimeout(r, 0));
      open();
      // The page changes at the origin after this fetch: what a revalidation brings is held until then.
      let next!: () => void;
      t.origin.gate = new Promise((r) => (next = r));
      const [led, joined] = await Promise.all([leader, joiner]);
      t.origin.version = 2;
      next();
      expect(text(led.body)).toBe("v1 /a ");
      expect(led.cacheStatus.detail).toBeUndefined();
      expect(text(joined.body)).toBe("v1 /a ");
      expect(joined.cacheStatus).toMatchObject({ collapsed: true, detail: "stale-while-revalidate" });
      await t.settle();
      expect(t.origin.calls).toHaveLength(2);
      const after = await t.engine.handle(get("/a"));
      expect([text(after.body), after.cacheStatus.hit, after.cacheStatus.detail]).toEqual(["v2 /a ", true, undefined]);
    });

    it("soft purge of everything goes through the same one-per-key path", async () => {
      for (const p of ["/1", "/2", "/3"]) await t.engine.handle(get(p));
      t.clock.advance(1);
      await t.purges.purge({ all: true, soft: true });
      t.clock.advance(1);
      await Promise.all(Array.from({ length: 60 }, (_, i) => t.engine.handle(get(`/${(i % 3) + 1}`))));
      await t.settle();
      expect(t.origin.calls).toHaveLength(6);
    });
  });

  describe("RFC 9110 §15.2: interim answers go to the request that caused the origin request", () => {
    const EARLY = [103, { link: "</s.css>; rel=preload; as=style", "x-hint": "1" }] as [number, Record<string, string>];
    const heard = () => {
      const calls: [number, [string, string][]][] = [];
      return { calls, onInterim: (code: number, fields: [string, string][]) => void calls.push([code, fields]) };
    };
    const hinted = [
      [
        103,
        [
          ["link", "</s.css>; rel=preload; as=style"],
          ["x-hint", "1"],
        ],
      ],
    ];

    it("a fill's leader hears them; its collapsed waiter, the hit after and the stored entry never do", async () => {
      t.origin.interim = [EARLY];
      let open!: () => void;
      t.origin.gate = new Promise((r) => (open = r));
      const [leader, waiter, later] = [heard(), heard(), heard()];
      const first = t.engine.handle({ ...get("/a"), onInterim: leader.onInterim });
      const second = t.engine.handle({ ...get("/a"), onInterim: waiter.onInterim });
      await new Promise((r) => setTimeout(r, 0));
      open();
      const answers = await Promise.all([first, second]);
      expect(answers.map((r) => r.cacheStatus.collapsed ?? false)).toEqual([false, true]);
      const hit = await t.engine.handle({ ...get("/a"), onInterim: later.onInterim });
      expect(hit.cacheStatus.hit).toBe(true);
      expect([leader.calls, waiter.calls, later.calls]).toEqual([hinted, [], []]);
      for (const res of [...answers, hit]) expect(res.headers.map(([name]) => name)).not.toContain("x-hint");
      expect(t.origin.calls).toHaveLength(1);
    });

    it("a refresh behind a stale answer goes to no client; a relayed request's client hears its own", async () => {
      await t.engine.handle(get("/a"));
      t.origin.interim = [EARLY];
      t.clock.advance(12_000);
      const stale = heard();
      const res = await t.engine.handle({ ...get("/a"), onInterim: stale.onInterim });
      expect(res.cacheStatus.detail).toBe("stale-while-revalidate");
      await t.settle();
      expect(t.origin.calls).toHaveLength(2);
      expect(stale.calls).toEqual([]);
      const poster = heard();
      await t.engine.handle({ ...get("/a", {}, "POST"), onInterim: poster.onInterim });
      expect(poster.calls).toEqual(hinted);
    });

    it("nor does the refresh a coordinator starts behind the stale copy it hands an edge without one", async () => {
      const two = setup({}, "two");
      await two.engine.handle(get("/a"));
      await two.store.delete(KEY_A);
      two.origin.interim = [EARLY];
      two.clock.advance(12_000);
      const edge = heard();
      const res = await two.engine.handle({ ...get("/a"), onInterim: edge.onInterim });
      expect(res.cacheStatus.hit).toBe(true);
      await two.settle();
      expect(two.origin.calls).toHaveLength(2);
      expect(edge.calls).toEqual([]);
    });
  });
});
