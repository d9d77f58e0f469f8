import { createServer, request, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  get,
  herdless,
  raw,
  reflectingOrigin,
  sendAsTaken,
  type Herdless,
  type ReflectingOrigin,
} from "./attack-kit.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

/**
 * The attack probes a reviewer runs against a shared cache, through the Node server (socket
 * hit path included): each test is the attacker's request, then the victim's, and asserts
 * what the victim is served and what reached the origin. The Worker's twin is
 * test/cloudflare/security-probes.test.ts.
 */

let origin: ReflectingOrigin;
let cache: Herdless;
const running: { close(): Promise<void> }[] = [];

afterEach(async () => {
  for (const one of running.splice(0).reverse()) await one.close();
});

async function setup(config: Parameters<typeof herdless>[1] = {}): Promise<void> {
  origin = await reflectingOrigin();
  cache = await herdless(origin.url, config);
  running.push(origin, cache);
}

const urls = () => origin.seen.map((s) => `${s.method} ${s.url}`);

describe("request-target and path tricks (Node)", () => {
  it("RFC 9112 §3.2: `//evil.test/p` is a path on the site, asked of the origin as it is, never the key of /p", async () => {
    await setup();
    const attack = await get(cache.base, "//evil.test/p");
    expect(attack.body).toContain("GET //evil.test/p ");
    const victim = await get(cache.base, "/p");
    expect(victim.headers["cache-status"]).toMatch(/fwd=uri-miss/);
    expect(victim.body).toContain("GET /p ");
    expect(urls()).toEqual(["GET //evil.test/p", "GET /p"]);
  });

  it("an absolute-form target that is not an http(s) URL with a valid host is a 400, never a 500", async () => {
    await setup();
    // `http:///p/q` has no host: never the host `p` the URL parser makes of it, `/q` fetched.
    for (const target of [
      "http://[zz]/p",
      "http://user:pw@shop.test/p",
      "http://@shop.test/p",
      "http:///shop.test/p",
      "https:////shop.test/p",
      "file:///etc/passwd",
      "*",
      "shop.test:80",
    ]) {
      const attack = await get(cache.base, target);
      expect(attack.status, target).toBe(400);
    }
    // The refusal names what was wrong, quoting the target: never as a page a browser would run.
    const reflected = await get(cache.base, "http://[zz]/<script>alert(1)</script>");
    expect(reflected.status).toBe(400);
    expect(reflected.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(reflected.headers["x-content-type-options"]).toBe("nosniff");
    expect((await get(cache.base, "http://shop.test/p")).status).toBe(200);
    expect((await get(cache.base, "/p")).headers["cache-status"]).toMatch(/hit/);
    expect(urls()).toEqual(["GET /p"]);
  });

  it("dot segments and %2e resolve to the path the origin is asked for; %2F, case and ;params are keys of their own", async () => {
    await setup();
    await get(cache.base, "/a/../p");
    expect((await get(cache.base, "/a/%2e%2e/p")).headers["cache-status"]).toMatch(/hit/);
    expect((await get(cache.base, "/p")).headers["cache-status"]).toMatch(/hit/);
    // A fragment is never part of a resource (RFC 9110 §4.2.5): the page itself, never sent on.
    expect((await get(cache.base, "/p#x")).headers["cache-status"]).toMatch(/hit/);
    for (const own of ["/a%2Fp", "/P", "/p;jsessionid=x", "/a\\..\\q", "/p/"]) await get(cache.base, own);
    // Each stored page is the answer to exactly the path its key names.
    expect(urls()).toEqual(["GET /p", "GET /a%2Fp", "GET /P", "GET /p;jsessionid=x", "GET /q", "GET /p/"]);
    expect((await get(cache.base, "/p;jsessionid=x")).body).toContain("GET /p;jsessionid=x ");
  });

  it("query order never splits a page, repeated names keep their order, an encoded ignored name is removed", async () => {
    await setup();
    await get(cache.base, "/q?b=1&a=2");
    expect((await get(cache.base, "/q?a=2&b=1")).headers["cache-status"]).toMatch(/hit/);
    const cloaked = await get(cache.base, "/q?a=2&%75tm_source=%3Cscript%3E&b=1");
    expect(cloaked.headers["cache-status"]).toMatch(/hit/);
    await get(cache.base, "/q?a=3&b=1&a=2");
    expect(urls()).toEqual(["GET /q?a=2&b=1", "GET /q?a=3&a=2&b=1"]);
    expect(origin.seen.some((s) => s.url.includes("script"))).toBe(false);
  });

  it("a Host in another case, with its default port or a trailing dot shares the page; another port is a page of its own", async () => {
    await setup();
    await get(cache.base, "/h", { headers: { host: "SHOP.test:80" } });
    expect((await get(cache.base, "/h")).headers["cache-status"]).toMatch(/hit/);
    expect((await get(cache.base, "/h", { headers: { host: "shop.test." } })).headers["cache-status"]).toMatch(/hit/);
    expect((await get(cache.base, "/h", { headers: { host: "shop.test:8080" } })).headers["cache-status"]).toMatch(
      /uri-miss/,
    );
  });

  it("RFC 9112 §3.2.2: an absolute-form target whose host disagrees with Host is keyed and fetched as the target's host, even when the origin is sent the client's host", async () => {
    await setup({ origin: { hostHeader: "client" } });
    await get(cache.base, "http://shop.test/abs", { headers: { host: "evil.test" } });
    expect(origin.seen[0]!.headers.host).toBe("shop.test");
    expect((await get(cache.base, "/abs")).headers["cache-status"]).toMatch(/hit/);
    await get(cache.base, "/abs", { headers: { host: "evil.test" } });
    expect(origin.seen.map((s) => s.headers.host)).toEqual(["shop.test", "evil.test"]);
  });

  it("the admin API spelled with dot segments or as an absolute URL is the admin API: never fetched, never stored", async () => {
    await setup({ admin: { token: "a-long-enough-admin-token" } });
    for (const target of [
      "/x/../__herdless/stats",
      "/%2e%2e/__herdless/stats",
      "http://shop.test/__herdless/stats",
      "//__herdless/stats",
      "/%5F_herdless/stats",
    ]) {
      const attack = await get(cache.base, target);
      expect(attack.status, target).toBe(401);
    }
    expect((await get(cache.base, "/__herdless")).status).toBe(308);
    // The operator's own request with a doubled slash is the admin API, its token never the origin's.
    const doubled = await get(cache.base, "//__herdless/stats", {
      headers: { authorization: "Bearer a-long-enough-admin-token" },
    });
    expect(doubled.status).toBe(200);
    expect(origin.seen).toHaveLength(0);
  });
});

describe("what the origin is sent (Node)", () => {
  it("scheme overrides (X-Forwarded-Ssl, Front-End-Https, X-Url-Scheme, X-Forwarded-Protocol) never reach the origin", async () => {
    await setup();
    const forged = {
      "x-forwarded-ssl": "on",
      "front-end-https": "on",
      "x-url-scheme": "https",
      "x-forwarded-protocol": "https",
      "x-scheme": "https",
      "x-proxied-https": "on",
      "x-forwarded-proto": "https",
    };
    await get(cache.base, "/s", { headers: forged });
    const victim = await get(cache.base, "/s");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.body).toContain("xfp=http xfssl=- ");
    for (const name of Object.keys(forged).filter((n) => n !== "x-forwarded-proto"))
      expect(origin.seen[0]!.headers[name], name).toBeUndefined();
  });

  it("a fat GET (a body on GET, by Content-Length or chunked) never reaches the origin nor shapes the stored page", async () => {
    await setup();
    const form = { "content-type": "application/x-www-form-urlencoded" };
    await get(cache.base, "/f", { headers: { ...form, "content-length": "9" }, body: "lang=evil" });
    await get(cache.base, "/g", {
      headers: { ...form, "transfer-encoding": "chunked" },
      body: "9\r\nlang=evil\r\n0\r\n\r\n",
    });
    for (const path of ["/f", "/g"]) {
      const victim = await get(cache.base, path);
      expect(victim.headers["cache-status"]).toMatch(/hit/);
      expect(victim.body).not.toContain("evil");
    }
    expect(origin.seen.map((s) => [s.body, s.headers["content-length"], s.headers["transfer-encoding"]])).toEqual([
      ["", undefined, undefined],
      ["", undefined, undefined],
    ]);
  });

  it("a body on a GET that is relayed alone (a Cookie) never reaches the origin, nor the Content-Length that framed it: no origin request left waiting, no breaker opened for the victim", async () => {
    await setup({ origin: { timeoutMs: 500 } });
    const fatGets = Array.from({ length: 5 }, (_, i) =>
      get(cache.base, `/fat${i}`, { headers: { cookie: "s=attacker", "content-length": "9" }, body: "lang=evil" }),
    );
    for (const attack of await Promise.all(fatGets)) {
      expect(attack.status).toBe(200);
      expect(attack.headers["cache-status"]).toMatch(/fwd=bypass; fwd-status=200/);
    }
    const victim = await get(cache.base, "/p");
    expect([victim.status, victim.headers["cache-status"]]).toEqual([
      200,
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
    ]);
    expect(origin.seen.map((s) => [s.body, s.headers["content-length"]])).toEqual(Array(6).fill(["", undefined]));
  });

  it("RFC 6585 §5: a request with 2,000 header fields or more is a 431 naming it: a Cookie after 2,000 short fields is never dropped unheard and the request answered as an anonymous one", async () => {
    await setup();
    let fields = "";
    for (let i = 0; i < 2_100; i++) fields += `a${i % 10}: b\r\n`;
    const late = `GET /late HTTP/1.1\r\nhost: shop.test\r\n${fields}cookie: session=own\r\nconnection: close\r\n\r\n`;
    const answer = await raw(cache.base, late);
    expect([answer.status, answer.headers["cache-status"]]).toEqual([431, "herdless; detail=refused"]);
    expect(answer.body).toMatch(/2103 fields/);
    expect(origin.seen).toHaveLength(0);
    expect((await get(cache.base, "/late")).status).toBe(200);
  });

  it("request smuggling: conflicting Content-Length / Transfer-Encoding, obs-fold, bare LF/CR and invalid bytes are a 400 and the hidden request never runs", async () => {
    await setup();
    const smuggled = "GET /smuggled HTTP/1.1\r\nhost: shop.test\r\n\r\n";
    const attacks = [
      `POST /p HTTP/1.1\r\nhost: shop.test\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /p HTTP/1.1\r\nhost: shop.test\r\ncontent-length: 4\r\ncontent-length: 40\r\n\r\nabcd${smuggled}`,
      `POST /p HTTP/1.1\r\nhost: shop.test\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /p HTTP/1.1\r\nhost: shop.test\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`,
      `GET /p HTTP/1.1\r\nhost : evil.test\r\nhost: shop.test\r\n\r\n`,
      // Framing that parsers disagree on: a lenient front and a strict origin would split here.
      `POST /p HTTP/1.1\r\nhost: shop.test\r\ncontent-length: +4\r\n\r\nabcd${smuggled}`,
      `POST /p HTTP/1.1\r\nhost: shop.test\r\ncontent-length: 4, 40\r\n\r\nabcd${smuggled}`,
      `POST /p HTTP/1.1\r\nhost: shop.test\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffff1\r\n${smuggled}`,
      `GET /p HTTP/1.1\r\nhost: shop.test\r\nx-a: a\r\n transfer-encoding: chunked\r\n\r\n`, // obs-fold
      `GET /p HTTP/1.1\nhost: shop.test\n\n`, // bare LF
      `GET /p HTTP/1.1\r\nhost: shop.test\r\nx-a: a\nx-b: b\r\n\r\n`, // bare LF inside the block
      `GET /p HTTP/1.1\r\nhost: shop.test\r\nx-a: a\x00b\r\n\r\n`, // NUL in a value
      `GET /p HTTP/1.1\r\nhost: shop.test\r\nx a: b\r\n\r\n`, // a name that is not a token
      `GET /p HTTP/1.1\r\nhost: shop.test\r\nx-a: a\rb\r\n\r\n`, // bare CR
    ];
    for (const attack of attacks) expect((await raw(cache.base, attack)).status, attack).toBe(400);
    expect(origin.seen).toHaveLength(0);
  });

  it("request smuggling to the origin: a chunked DELETE or OPTIONS body reaches the origin framed, never as a second request it wrote", async () => {
    await setup();
    // The attacker's body is a whole request with the headers herdless would strip or replace.
    const hidden = "GET /internal-admin HTTP/1.1\r\nHost: internal\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n";
    const chunked = `${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`;
    for (const method of ["DELETE", "OPTIONS", "PATCH"]) {
      const attack = await raw(
        cache.base,
        `${method} /items/1 HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`,
      );
      expect(attack.status, method).toBe(200);
    }
    // The victim: the origin, whose next request on the kept-alive connection is the proxy's own.
    expect((await get(cache.base, "/after")).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(urls()).toEqual(["DELETE /items/1", "OPTIONS /items/1", "PATCH /items/1", "GET /after"]);
    for (const seen of origin.seen.slice(0, 3)) expect(seen.body, seen.method).toBe(hidden);
  });

  it("RFC 9112 §6.1: a body in a transfer coding herdless does not decode (gzip, chunked) is a 501 naming it, never relayed as if it were plain", async () => {
    await setup();
    for (const coding of ["gzip, chunked", "deflate, chunked"]) {
      // The body's bytes are in `coding` (ASCII here: what the origin would read them as matters not).
      const attack = await raw(
        cache.base,
        `POST /form HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\nTransfer-Encoding: ${coding}\r\n\r\n` +
          `3\r\na=1\r\n0\r\n\r\n`,
      );
      expect([attack.status, attack.headers["cache-status"]], coding).toEqual([501, "herdless; detail=refused"]);
      expect(attack.body).toContain(`transfer coding not implemented: "${coding}"`);
    }
    expect(origin.seen).toHaveLength(0);
    const victim = await get(cache.base, "/form", { method: "POST", headers: { "content-length": "3" }, body: "a=1" });
    expect([victim.status, origin.seen[0]?.body]).toEqual([200, "a=1"]);
  });

  it("RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400 naming it; HTTP/1.0 may omit it", async () => {
    await setup();
    const attack = await raw(cache.base, "GET /p HTTP/1.1\r\nConnection: close\r\n\r\n");
    expect([attack.status, attack.headers["cache-status"]]).toEqual([400, "herdless; detail=refused"]);
    expect(attack.body).toContain("request has no Host header");
    expect(origin.seen).toHaveLength(0);
    expect((await raw(cache.base, "GET /p HTTP/1.0\r\n\r\n")).status).toBe(200);
  });

  it("a request Node's parser refuses is told what was wrong: an unknown or lowercase method is a 501 naming it, a malformed one a 400 naming the fault", async () => {
    await setup();
    for (const method of ["get", "FOO"]) {
      const attack = await raw(cache.base, `${method} /p HTTP/1.1\r\nhost: shop.test\r\n\r\n`);
      expect([attack.status, attack.headers["cache-status"]], method).toEqual([501, "herdless; detail=refused"]);
      expect(attack.body).toContain(`method "${method}" is not implemented`);
    }
    const malformed = await raw(cache.base, "GET /p HTTP/1.1\r\nhost: shop.test\r\nx a: b\r\n\r\n");
    expect([malformed.status, malformed.body]).toEqual([
      400,
      "bad request: Invalid header token (HPE_INVALID_HEADER_TOKEN)\n",
    ]);
    // The refusal quotes nothing a browser would run.
    expect(malformed.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect((await raw(cache.base, `GET /p HTTP/1.1\r\nx: ${"a".repeat(20_000)}\r\n\r\n`)).body).toContain("too large");
    expect(origin.seen).toHaveLength(0);
  });

  it("a refused request pipelined behind another in one write is told its own fault, never one read from the request before it", async () => {
    await setup();
    const first = "GET /p HTTP/1.1\r\nhost: shop.test\r\n\r\n";
    /** The statuses on the connection, and the body of the last answer (the refusal, which closes it). */
    const behind = async (before: string, refused: string) => {
      const { text } = await raw(cache.base, before + refused);
      return [
        [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1])),
        text.slice(text.lastIndexOf("\r\n\r\n") + 4),
      ];
    };
    // Bytes that are no method: a 400, never a 501 naming the GET before them.
    expect(await behind(first, "\0x /q HTTP/1.1\r\nhost: shop.test\r\n\r\n")).toEqual([
      [200, 400],
      "bad request: Invalid method encountered (HPE_INVALID_METHOD)\n",
    ]);
    // A method in lower case: the 501 names it as written.
    const lower = await behind(first, "get /q HTTP/1.1\r\nhost: shop.test\r\n\r\n");
    expect(lower[0]).toEqual([200, 501]);
    expect(lower[1]).toContain('method "get" is not implemented');
    // A body one byte longer than its Content-Length said: the byte left over begins the next
    // request, and the 501 names that request's method, not the body's bytes before it.
    const post = "POST /p HTTP/1.1\r\nhost: shop.test\r\ncontent-length: 3\r\n\r\nxxxx";
    expect((await behind(post, "GET /q HTTP/1.1\r\nhost: shop.test\r\n\r\n"))[1]).toContain(
      'method "xGET" is not implemented',
    );
    // What the parser took as the start of a method it knows is the refused one's.
    expect((await behind(first, "GEX /q HTTP/1.1\r\nhost: shop.test\r\n\r\n"))[1]).toContain(
      'method "GEX" is not implemented',
    );
    // The refused request's own target is what is too long (414), or its fields (431),
    // whatever the target of the request before.
    expect((await behind(first, `GET /${"a".repeat(20_000)} HTTP/1.1\r\nhost: shop.test\r\n\r\n`))[0]).toEqual([
      200, 414,
    ]);
    const longBefore = `GET /${"b".repeat(9_000)} HTTP/1.1\r\nhost: shop.test\r\n\r\n`;
    expect(
      (await behind(longBefore, `GET /q HTTP/1.1\r\nhost: shop.test\r\nx-big: ${"c".repeat(20_000)}\r\n\r\n`))[0],
    ).toEqual([200, 431]);
  });

  it("RFC 9110 §9.3.2: a HEAD the parser refuses (in its head or its body) is told so without a body, which its client would read as what comes next", async () => {
    await setup();
    for (const attack of [
      "HEAD /p HTTP/1.1\r\nhost: shop.test\r\nbad field: x\r\n\r\n",
      "HEAD /p HTTP/1.1\r\nhost: shop.test\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
      `HEAD /${"a".repeat(20_000)} HTTP/1.1\r\nhost: shop.test\r\n\r\n`,
    ]) {
      const { text, status, headers } = await raw(cache.base, attack);
      expect([status, headers["cache-status"]], attack.slice(0, 60)).toEqual([
        expect.any(Number),
        "herdless; detail=refused",
      ]);
      expect(status).toBeGreaterThanOrEqual(400);
      // The head, and nothing after it.
      expect(text.endsWith("\r\n\r\n"), attack.slice(0, 60)).toBe(true);
    }
    // A GET's refusal still names the fault.
    expect((await raw(cache.base, "GET /p HTTP/1.1\r\nhost: shop.test\r\nbad field: x\r\n\r\n")).body).toContain(
      "HPE_INVALID_HEADER_TOKEN",
    );
  });

  it("RFC 9110 §15.6.6: a request line in another major version (HTTP/2.0, or HTTP/0.9 with none) is a 505, never fetched or stored; the victim's HTTP/1.1 is served", async () => {
    await setup();
    for (const attack of ["GET /p HTTP/2.0\r\nhost: shop.test\r\nconnection: close\r\n\r\n", "GET /p\r\n\r\n"]) {
      const answer = await raw(cache.base, attack);
      expect([answer.status, answer.headers["cache-status"]], attack).toEqual([505, "herdless; detail=refused"]);
      expect(answer.body).toContain("HTTP version not supported");
    }
    expect(origin.seen).toHaveLength(0);
    const victim = await get(cache.base, "/p");
    expect([victim.status, victim.headers["cache-status"]]).toEqual([200, expect.stringContaining("fwd=uri-miss")]);
  });

  it("RFC 9110 §10.1.1: an Expect other than 100-continue is a 417 naming it, never forwarded, and the victim is served", async () => {
    await setup();
    const attack = await get(cache.base, "/p", { headers: { expect: "x-attack" } });
    expect(attack.status).toBe(417);
    expect(attack.body).toContain('"x-attack" cannot be met');
    expect(attack.headers["cache-status"]).toBe("herdless; detail=refused");
    expect((await get(cache.base, "/p")).status).toBe(200);
    expect(urls()).toEqual(["GET /p"]);
  });

  it("RFC 9110 §9.3.6: CONNECT opens no tunnel through the cache: a 405 naming it, never a dropped connection", async () => {
    await setup();
    const attack = await raw(cache.base, "CONNECT 127.0.0.1:22 HTTP/1.1\r\nhost: 127.0.0.1:22\r\n\r\n");
    expect(attack.status).toBe(405);
    expect(attack.body).toContain("CONNECT is not allowed");
    expect(origin.seen).toHaveLength(0);
  });

  it("RFC 9112 §3.2.4: OPTIONS * (asterisk-form, Max-Forwards 0 or none) is answered by herdless with Allow, never a 400, never forwarded", async () => {
    await setup();
    for (const maxForwards of ["", "max-forwards: 0\r\n"]) {
      const answer = await raw(
        cache.base,
        `OPTIONS * HTTP/1.1\r\nhost: shop.test\r\n${maxForwards}connection: close\r\n\r\n`,
      );
      expect([answer.status, answer.headers.allow]).toEqual([200, "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE"]);
    }
    // Any other method with an asterisk is still no request-target herdless can serve.
    expect((await raw(cache.base, "GET * HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n\r\n")).status).toBe(400);
    expect(origin.seen).toHaveLength(0);
  });

  it("an oversized URL is a 414 (RFC 9112 §3), an oversized header block a 431, never a 500, and the victim is served", async () => {
    await setup();
    const longUrl = await get(cache.base, `/${"a".repeat(20_000)}`);
    expect([longUrl.status, longUrl.body]).toEqual([
      414,
      "URI too long: the request-target (20001 bytes or more) leaves no room in this server's 16 KiB request head\n",
    ]);
    expect((await get(cache.base, `/${"a".repeat(70_000)}`)).status).toBe(414);
    // A long target with long fields: the target is the bulk of the head.
    expect((await get(cache.base, `/${"a".repeat(10_000)}`, { headers: { "x-big": "b".repeat(10_000) } })).status).toBe(
      414,
    );
    expect((await get(cache.base, "/p", { headers: { "x-big": "a".repeat(20_000) } })).status).toBe(431);
    const many = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`x-h${i}`, "1"]));
    expect((await get(cache.base, "/p", { headers: many })).status).toBe(431);
    expect((await get(cache.base, "/p")).status).toBe(200);
    expect(origin.seen).toHaveLength(1);
  });
});

describe("what is stored and served to the victim (Node)", () => {
  it("HEAD then GET: the attacker's HEAD fills with a GET, so the victim's GET gets the whole body", async () => {
    await setup();
    const head = await get(cache.base, "/h", { method: "HEAD" });
    expect(head.body).toBe("");
    const victim = await get(cache.base, "/h");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.body).toContain("GET /h ");
    expect(victim.body.length).toBe(Number(victim.headers["content-length"]));
    expect(urls()).toEqual(["GET /h"]);
  });

  it("Range first: the attacker's range is cut from a full fill, and the victim gets the full 200; an origin's 206 is never stored", async () => {
    await setup();
    const attack = await get(cache.base, "/r", { headers: { range: "bytes=0-1" } });
    expect(attack.status).toBe(206);
    const victim = await get(cache.base, "/r");
    expect(victim.status).toBe(200);
    expect(victim.body).toContain("GET /r ");
    expect(origin.seen[0]!.headers.range).toBeUndefined();
    await get(cache.base, "/partial?status=206");
    const after = await get(cache.base, "/partial?status=206");
    expect(after.headers["cache-status"]).not.toMatch(/hit/);
    expect(origin.seen).toHaveLength(3);
  });

  it("preconditions and ranges on a fill (If-Match, If-Unmodified-Since, If-Range, an unsatisfiable Range) are answered from the full copy: the attacker's 412 or 416 is never the victim's", async () => {
    await setup();
    const attacks: [string, Record<string, string>, number][] = [
      ["/c1?etag=v1", { "if-match": '"other"' }, 412],
      ["/c2", { "if-unmodified-since": "Mon, 01 Jan 1990 00:00:00 GMT" }, 200],
      ["/c3?etag=v1", { "if-range": '"other"', range: "bytes=0-1" }, 200],
      ["/c4", { range: "bytes=999999-" }, 416],
    ];
    for (const [path, headers, status] of attacks) {
      expect((await get(cache.base, path, { headers })).status, path).toBe(status);
      const victim = await get(cache.base, path);
      expect([victim.status, victim.headers["cache-status"]], path).toEqual([200, "herdless; hit; ttl=60"]);
    }
    expect(origin.seen.map((s) => Object.keys(s.headers).filter((n) => n.startsWith("if-") || n === "range"))).toEqual([
      [],
      [],
      [],
      [],
    ]);
  });

  it("method overrides on a GET (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, X-Forwarded-Method, X-Original-Method, underscore spellings) never reach the origin; `_method` in the query is a key of its own", async () => {
    await setup();
    const overrides = {
      "x-http-method-override": "DELETE",
      "x-http-method": "PUT",
      "x-method-override": "POST",
      "x-forwarded-method": "DELETE",
      "x-original-method": "DELETE",
      x_http_method_override: "DELETE",
    };
    await get(cache.base, "/m", { headers: overrides });
    expect((await get(cache.base, "/m")).headers["cache-status"]).toMatch(/hit/);
    // Rack, Laravel, Symfony and Express's method-override read `_method` on POST only; on a GET
    // it is a query parameter like any other, so it only names its own page.
    await get(cache.base, "/m?_method=DELETE");
    expect((await get(cache.base, "/m")).headers["cache-status"]).toMatch(/hit/);
    expect(urls()).toEqual(["GET /m", "GET /m?_method=DELETE"]);
    for (const name of Object.keys(overrides)) expect(origin.seen[0]!.headers[name], name).toBeUndefined();
  });

  it("Vary names in any case and spacing select by the victim's own header value, never the attacker's", async () => {
    await setup();
    const page = "/v?vary=%20X-LANG%20,%20accept-encoding";
    await get(cache.base, page, { headers: { "X-Lang": "evil" } });
    const victim = await get(cache.base, page, { headers: { "x-lang": "en" } });
    expect(victim.body).toContain("lang=en");
    expect((await get(cache.base, page, { headers: { "X-LANG": "evil" } })).headers["cache-status"]).toMatch(/hit/);
    await get(cache.base, "/star?vary=*");
    expect((await get(cache.base, "/star?vary=*")).headers["cache-status"]).not.toMatch(/hit/);
  });

  it("RFC 9110 §12.5.5: a Vary member that names no field (quoted, with a parameter, with a space) is never stored as if it selected nothing: the attacker's language is not the victim's page", async () => {
    await setup();
    for (const vary of ['"X-Lang"', "X-Lang;q=1", "X Lang", "X-Lang/1"]) {
      const page = `/bad-vary?vary=${encodeURIComponent(vary)}`;
      await get(cache.base, page, { headers: { "X-Lang": "evil" } });
      const victim = await get(cache.base, page, { headers: { "X-Lang": "en" } });
      expect(victim.body, vary).toContain("lang=en");
      expect(victim.headers["cache-status"], vary).not.toMatch(/hit/);
    }
  });

  it("RFC 9111 §4.1: a page that varies on a header herdless sets (Host, X-Forwarded-Proto, Via) is a hit for the next visitor, whatever the client sent", async () => {
    await setup();
    for (const vary of ["Host", "X-Forwarded-Proto", "Via", "X-Forwarded-Host"]) {
      const page = `/v-${vary}?vary=${vary}`;
      expect((await get(cache.base, page)).headers["cache-status"], vary).toMatch(/fwd=uri-miss/);
      expect((await get(cache.base, page)).headers["cache-status"], vary).toMatch(/hit/);
      // A client's own value is replaced or stripped on the way (a Via is extended, so it is another variant).
      if (vary === "Via") continue;
      const forged = { [vary === "Host" ? "x-other" : vary]: "forged", "accept-language": "fr" };
      expect((await get(cache.base, page, { headers: forged })).headers["cache-status"], vary).toMatch(/hit/);
    }
    expect(origin.seen).toHaveLength(4);
    // A header the client names in Connection never reaches the origin: the copy it selects is the one without it.
    const lang = "/lang2?vary=x-lang";
    await get(cache.base, lang, { headers: { "x-lang": "fr", connection: "close, x-lang" } });
    const french = await get(cache.base, lang, { headers: { "x-lang": "fr" } });
    expect(french.headers["cache-status"]).toMatch(/vary-miss/);
    expect(french.body).toContain("lang=fr");
    expect((await get(cache.base, lang)).headers["cache-status"]).toMatch(/hit/);
  });

  it("RFC 9111 §3.5: a request with Authorization or Cookie is never given the shared copy, nor its answer to others", async () => {
    await setup();
    await get(cache.base, "/me");
    const withToken = await get(cache.base, "/me", { headers: { authorization: "Bearer attacker" } });
    expect(withToken.body).toContain("auth=Bearer attacker");
    const withCookie = await get(cache.base, "/me", { headers: { cookie: "session=attacker" } });
    expect(withCookie.headers["cache-status"]).toMatch(/fwd=bypass/);
    const victim = await get(cache.base, "/me");
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.body).toContain("auth=-");
    // The personal answer (no `public`) to an Authorization request first is never stored.
    await get(cache.base, "/mine", { headers: { authorization: "Bearer victim" } });
    expect((await get(cache.base, "/mine")).body).toContain("auth=-");
  });

  it("cache deception: a victim's personal page under a static-looking URL (forced TTL route) is never served to the attacker", async () => {
    await setup({ routes: [{ match: "/static/*", forceTtlMs: 86_400_000 }] });
    const lures = ["/static/account.css", "/static/..%2faccount", "/static/x/..;/account.js"];
    for (const lure of lures) {
      await get(cache.base, lure, { headers: { authorization: "Bearer victim" } });
      await get(cache.base, `${lure}?c=1`, { headers: { cookie: "session=victim" } });
    }
    for (const lure of lures) {
      const attacker = await get(cache.base, lure);
      expect(attacker.body, lure).toContain("auth=-");
      expect(attacker.headers["cache-status"], lure).toMatch(/fwd=uri-miss; fwd-status=200; ttl=86400; stored/);
      expect((await get(cache.base, `${lure}?c=1`)).headers["cache-status"], lure).not.toMatch(/hit/);
    }
  });

  it("RFC 9111 §4.3.4, §5.1: after a 304 the copy's Age restarts, Cache-Status says so, and the 304's Set-Cookie goes to its requester only", async () => {
    await setup();
    const page = `/rv?cc=max-age=10&etag=v1&on304=${encodeURIComponent(JSON.stringify({ "set-cookie": "s=attacker" }))}`;
    await get(cache.base, page);
    cache.clock.advance(15_000);
    const attack = await get(cache.base, page);
    expect(attack.headers["cache-status"]).toMatch(/fwd=stale; fwd-status=304/);
    // Validated by the origin for this request (RFC 9111 §5.1): no Age, or 0, never the old copy's.
    expect(attack.headers.age ?? "0").toBe("0");
    expect(attack.headers["set-cookie"]).toBe("s=attacker");
    cache.clock.advance(3_000);
    const victim = await get(cache.base, page);
    expect(victim.headers["set-cookie"]).toBeUndefined();
    expect(Number(victim.headers.age)).toBeLessThanOrEqual(3);
  });

  it("RFC 9111 §4.2.4: must-revalidate, proxy-revalidate and no-cache copies are never served stale when the origin fails, stale-if-error or not", async () => {
    await setup({ defaults: { staleIfErrorMs: 600_000 } });
    for (const cc of ["max-age=1, must-revalidate, stale-if-error=600", "max-age=1, proxy-revalidate", "no-cache"]) {
      const page = `/mr?fail=1&cc=${encodeURIComponent(cc)}`;
      expect((await get(cache.base, page)).status).toBe(200);
      cache.clock.advance(5_000);
      const victim = await get(cache.base, page);
      expect(victim.status, cc).toBe(500);
      expect(victim.headers["cache-status"], cc).not.toMatch(/stale-if-error/);
    }
    // The same failure on a copy that allows it is hidden.
    const page = "/ok?fail=1&cc=max-age%3D1";
    await get(cache.base, page);
    cache.clock.advance(5_000);
    expect((await get(cache.base, page)).headers["cache-status"]).toMatch(/detail=stale-if-error/);
  });

  it("RFC 9111 §5.2: `max-age=3600; private` (a `;` slip) and `max-age=60 no-store` still say private and no-store: the owner's page is never served stale to the next visitor", async () => {
    // An operator's grace window serves stored copies stale: the one place a spoiled max-age still lets a copy out.
    await setup({ defaults: { staleWhileRevalidateMs: 60_000, staleIfErrorMs: 600_000 } });
    for (const cc of [
      "max-age=3600; private",
      "max-age=3600;private",
      "max-age=60 no-store",
      "public, max-age=60 private",
    ]) {
      const page = `/me?cc=${encodeURIComponent(cc)}`;
      const owner = await get(cache.base, page, { headers: { "x-lang": "ann" } });
      expect(owner.body, cc).toContain("lang=ann");
      expect(owner.headers["cache-status"], cc).toMatch(/detail=uncacheable/);
      const victim = await get(cache.base, page);
      expect(victim.headers["cache-status"], cc).not.toMatch(/hit|stale/);
      expect(victim.body, cc).toContain("lang=-");
    }
    expect(origin.seen).toHaveLength(8);
  });

  it("W3C Edge Architecture §3: a Surrogate-Control that only asks for ESI processing never overrides Cache-Control: private", async () => {
    // Symfony adds `Surrogate-Control: content="ESI/1.0"` to every page it renders with ESI tags.
    await setup({ defaults: { defaultTtlMs: 60_000 } });
    const page = `/dash?cc=private,max-age=60&sc=${encodeURIComponent('content="ESI/1.0"')}`;
    const victim = await get(cache.base, page, { headers: { "x-lang": "victim-secret" } });
    expect(victim.body).toContain("lang=victim-secret");
    const attacker = await get(cache.base, page);
    expect(attacker.headers["cache-status"]).not.toMatch(/hit/);
    expect(attacker.body).not.toContain("victim-secret");
    expect(origin.seen).toHaveLength(2);
  });

  it("cache-poisoned DoS: a 404/405 a client provokes with a header is not stored for the route's TTL", async () => {
    await setup({ defaults: { defaultTtlMs: 60_000 } });
    const attack = await get(cache.base, "/api/items", { headers: { "x-api-version": "666" } });
    expect(attack.status).toBe(404);
    const victim = await get(cache.base, "/api/items");
    expect(victim.status).toBe(200);
    expect(victim.body).toContain("GET /api/items ");
    expect((await get(cache.base, "/api/items")).headers["cache-status"]).toMatch(/hit/);
    await setup({ routes: [{ match: "/static/*", forceTtlMs: 60_000 }] });
    expect((await get(cache.base, "/static/a.js", { headers: { "x-api-version": "666" } })).status).toBe(404);
    expect((await get(cache.base, "/static/a.js")).status).toBe(200);
  });

  it("s-maxage wins over max-age for the shared copy; private and no-store answers are never shared", async () => {
    await setup();
    await get(cache.base, "/sm?cc=max-age%3D1%2Cs-maxage%3D100");
    cache.clock.advance(5_000);
    expect((await get(cache.base, "/sm?cc=max-age%3D1%2Cs-maxage%3D100")).headers["cache-status"]).toMatch(/hit/);
    await get(cache.base, "/sm0?cc=max-age%3D100%2Cs-maxage%3D0");
    expect((await get(cache.base, "/sm0?cc=max-age%3D100%2Cs-maxage%3D0")).headers["cache-status"]).not.toMatch(/hit/);
    for (const cc of ["private%2Cmax-age%3D60", "no-store%2Cmax-age%3D60"]) {
      await get(cache.base, `/p?cc=${cc}`);
      expect((await get(cache.base, `/p?cc=${cc}`)).headers["cache-status"]).not.toMatch(/hit/);
    }
  });
});

describe("resource exhaustion (Node)", () => {
  it("a Vary'd header of 15 KB of spaces costs no more CPU than its length: the victim is not kept waiting", async () => {
    await setup();
    const page = "/lang?vary=accept-language";
    expect((await get(cache.base, page, { headers: { "accept-language": "en" } })).status).toBe(200);
    const started = performance.now();
    const bombs = Array.from({ length: 4 }, () =>
      get(cache.base, page, { headers: { "accept-language": `en${" ".repeat(15_000)}x` } }),
    );
    const victim = await get(cache.base, page, { headers: { "accept-language": "en" } });
    for (const bomb of await Promise.all(bombs)) expect(bomb.status).toBe(200);
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    // A backtracking normalization held the event loop ~0.4 s per variant key (several a request).
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("a query of 2,600 undecodable names (%ff, %zz) costs no more CPU than its length: the victim is not kept waiting", async () => {
    await setup();
    expect((await get(cache.base, "/hot")).status).toBe(200);
    const started = performance.now();
    // Each made its key three times, each time throwing from decodeURIComponent per name (~15 ms):
    // these 60 held the event loop ~4 s.
    const bombs = Array.from({ length: 60 }, (_, i) =>
      get(cache.base, `/q${i}?${i % 2 ? "%ff=1&" : "%zz=1&"}`.padEnd(15_600, i % 2 ? "%ff=1&" : "%zz=1&")),
    );
    const victim = await get(cache.base, "/hot");
    for (const bomb of await Promise.all(bombs)) expect(bomb.status).toBe(200);
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(performance.now() - started).toBeLessThan(2_500);
  });

  it("slow reader: a client that asks for a large file and never reads cannot stall the victim's download of it", async () => {
    const size = 64 * 1024 * 1024; // past maxEntryBytes (streamed, not kept) and past any socket buffers
    const chunk = Buffer.alloc(64 * 1024, 7);
    const server: Server = createServer((_, res) => {
      res.writeHead(200, { "cache-control": "max-age=60", "content-length": String(size) });
      // Attacker and victim both join the one fetch before its body flows.
      setTimeout(() => sendAsTaken(res, size, chunk), 100);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    running.push({
      close: async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      },
    });
    const originUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const cache = await herdless(originUrl, {
      cache: { maxEntryBytes: 1024 * 1024 },
      origin: { streamIdleTimeoutMs: 500 },
    });
    running.push(cache);
    const attacker = connect(Number(new URL(cache.base).port), "127.0.0.1", () =>
      attacker.write("GET /big.iso HTTP/1.1\r\nHost: shop.test\r\n\r\n"),
    );
    attacker.pause(); // reads nothing: its socket buffers fill, then it holds the shared body back
    running.push({ close: async () => void attacker.destroy() });
    await new Promise((resolve) => setTimeout(resolve, 30));
    const victim = await new Promise<{ bytes: number; cacheStatus: string }>((resolve, reject) => {
      request(`${cache.base}/big.iso`, { headers: { host: "shop.test" } }, (res) => {
        let bytes = 0;
        res.on("data", (data: Buffer) => (bytes += data.length));
        res.on("end", () => resolve({ bytes, cacheStatus: String(res.headers["cache-status"]) }));
        res.on("error", reject);
      }).end();
    });
    expect(victim.cacheStatus).toMatch(/collapsed/);
    expect(victim.bytes).toBe(size);
  });

  it.each([
    ["that share fills", ["/big1.iso", "/big2.iso"], ""],
    ["relayed alone (a Cookie)", ["/big1.iso", "/big2.iso"], "Cookie: session=attacker\r\n"],
  ])(
    "slow reader: clients %s that ask for large files and never read cannot hold the origin cap: the victim's cold miss is served",
    async (_, paths, cookie) => {
      const size = 64 * 1024 * 1024;
      const chunk = Buffer.alloc(64 * 1024, 7);
      const server: Server = createServer((req, res) => {
        if (!req.url!.startsWith("/big")) return void res.writeHead(200, { "cache-control": "max-age=60" }).end("page");
        res.writeHead(200, { "cache-control": "max-age=60", "content-length": String(size) });
        sendAsTaken(res, size, chunk);
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      running.push({
        close: async () => {
          server.closeAllConnections();
          await new Promise((resolve) => server.close(resolve));
        },
      });
      const originUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const cache = await herdless(originUrl, {
        cache: { maxEntryBytes: 1024 * 1024 },
        origin: { maxConcurrency: 2, queueTimeoutMs: 5_000, streamIdleTimeoutMs: 500 },
      });
      running.push(cache);
      // As many attackers as the cap: each holds an origin connection and its permit while it reads nothing.
      for (const path of paths) {
        const attacker = connect(Number(new URL(cache.base).port), "127.0.0.1", () =>
          attacker.write(`GET ${path} HTTP/1.1\r\nHost: shop.test\r\n${cookie}\r\n`),
        );
        attacker.pause();
        running.push({ close: async () => void attacker.destroy() });
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      const victim = await get(cache.base, "/page");
      expect(victim.status).toBe(200);
      expect(victim.headers["cache-status"]).toMatch(/fwd=uri-miss; fwd-status=200/);
    },
  );
});

describe("a request loop (Node)", () => {
  it("origin.url pointing at herdless itself: a GET and a POST are a 508 naming the loop at once, never a 504 after origin.timeoutMs", async () => {
    const free = createServer();
    await new Promise<void>((resolve) => free.listen(0, "127.0.0.1", resolve));
    const port = (free.address() as AddressInfo).port;
    await new Promise<void>((resolve) => free.close(() => resolve()));
    const self = `http://127.0.0.1:${port}`;
    const logger = jsonLogger("silent");
    const config = parseConfig({ origin: { url: self } });
    const running = await startServer({ stack: localStack({ config, logger }), logger, port, fastHits: true });
    try {
      for (const [method, path] of [
        ["GET", "/loop"],
        ["POST", "/form"],
        ["GET", "/other"],
      ] as const) {
        const started = Date.now();
        const answer = await get(
          self,
          path,
          method === "POST" ? { method, body: "x", headers: { "content-length": "1" } } : {},
        );
        expect(answer.status, path).toBe(508);
        expect(answer.body).toContain("request loop");
        // The loop is named, the origin's address is not (security-disclosure.test.ts).
        expect(answer.body).not.toContain(self);
        // Each hop answered at once: nothing waited on a collapsed fill or a permit.
        expect(Date.now() - started).toBeLessThan(5_000);
      }
    } finally {
      await running.close();
    }
  });
});
