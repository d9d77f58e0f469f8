import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingHttpHeaders, type RequestListener } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { connect, type AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import type { ConfigInput } from "../../src/core/config.ts";
import { get as rawGet, herdless as startHerdless } from "./attack-kit.ts";
import { launchCli } from "./cli-process.ts";

/**
 * Promise 8 on Node, over real sockets: the origin receives the request the client sent
 * (its end-to-end headers, nothing the HTTP client library would add) and the client gets
 * the bytes the origin sent, in the coding the origin chose. Attacks first (what an
 * attacker's request could make the origin store for a victim), then the origin's view.
 */

const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

interface Seen {
  url: string;
  headers: IncomingHttpHeaders;
  /** Names as they arrived on the wire, in order, lowercased. */
  names: string[];
}

const PAGE = "<html>the page, long enough to be worth compressing</html>".repeat(20);

/**
 * An origin like many real ones: a WAF in front refuses clients that look like scripts (the
 * `node` user agent undici sends when a client sent none, or Fetch metadata no browser
 * sends on a navigation), its page says which language it picked from Accept-Language, and
 * it gzips for clients that accept gzip (with `Vary: Accept-Encoding` unless `vary=0`).
 * Every answer is cacheable; `seen` records what reached it.
 */
async function recordingOrigin(tls?: { cert: Buffer; key: Buffer }): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const answer: RequestListener = (req, res) => {
    req.resume();
    const names = req.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    seen.push({ url: req.url ?? "", headers: req.headers, names });
    const ua = req.headers["user-agent"];
    if (ua === "node" || names.some((name) => name.startsWith("sec-fetch-"))) {
      res.writeHead(403, { "cache-control": "max-age=60", "content-type": "text/plain" }).end("blocked by WAF");
      return;
    }
    const lang = req.headers["accept-language"] === "*" ? "xx" : (req.headers["accept-language"] ?? "en");
    const body = Buffer.from(`${PAGE} lang=${lang}`);
    const headers: Record<string, string> = { "cache-control": "max-age=60", "content-type": "text/html" };
    if (!(req.url ?? "").includes("vary=0")) headers.vary = "Accept-Encoding";
    if (/\bgzip\b/.test(req.headers["accept-encoding"] ?? ""))
      res.writeHead(200, { ...headers, "content-encoding": "gzip" }).end(gzipSync(body));
    else res.writeHead(200, headers).end(body);
  };
  const server = tls ? createHttpsServer(tls, answer) : createServer(answer);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `${tls ? "https" : "http"}://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** attack-kit's herdless in front of `originUrl`, closed after the test. */
async function herdless(originUrl: string, extra: Partial<ConfigInput> = {}): Promise<string> {
  const running = await startHerdless(originUrl, extra);
  cleanup.push(() => running.close());
  return running.base;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  /** The bytes as they came off the socket: Node's client decodes no Content-Encoding. */
  bytes: Buffer;
}

/** A request with exactly `headers` (Node's client adds only Host and Connection). */
function send(base: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { headers: { host: "shop.test", ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

const isGzip = (bytes: Buffer) => bytes[0] === 0x1f && bytes[1] === 0x8b;

describe("attacks through what herdless would add to an origin request (Node)", () => {
  it("a request without User-Agent, Accept or Accept-Language reaches the origin without them: no WAF page, no `*` language stored for the victim", async () => {
    const origin = await recordingOrigin();
    const base = await herdless(origin.url);
    // A script (curl -H 'User-Agent:', a bot) fills the key first.
    const attacker = await send(base, "/home");
    expect(attacker.status).toBe(200);
    const fill = origin.seen[0]!;
    for (const name of ["user-agent", "accept", "accept-language"]) expect(fill.headers[name], name).toBeUndefined();
    expect(fill.names.filter((name) => name.startsWith("sec-fetch-"))).toEqual([]);
    // The browser after it is served the page the origin made for a request like its own.
    const victim = await send(base, "/home", { "user-agent": "Mozilla/5.0", "accept-language": "en" });
    expect(victim.status).toBe(200);
    expect(victim.headers["cache-status"]).toMatch(/hit/);
    expect(victim.bytes.toString()).toMatch(/lang=en$/);
    expect(origin.seen).toHaveLength(1);
  });

  it("a gzip-accepting client cannot make the stored copy gzip bytes for a client that accepts only identity (or writes gzip;q=0.0000)", async () => {
    const origin = await recordingOrigin();
    const base = await herdless(origin.url);
    for (const path of ["/styled", "/unvaried?vary=0"]) {
      const attacker = await send(base, path, { "accept-encoding": "gzip, deflate" });
      expect(attacker.headers["content-encoding"], path).toBe("gzip");
      // A weight that is not a qvalue (`q=0.0000`, more than 3 decimals) refuses gzip too.
      const refusals = [{ "accept-encoding": "identity" }, {}, { "accept-encoding": "gzip;q=0.0000, br;q=-1" }];
      for (const victimHeaders of refusals as Record<string, string>[]) {
        const victim = await send(base, path, victimHeaders);
        expect(victim.status).toBe(200);
        expect(victim.headers["content-encoding"], path).toBeUndefined();
        expect(isGzip(victim.bytes), path).toBe(false);
        expect(victim.bytes.toString()).toBe(`${PAGE} lang=en`);
      }
      // The identity variant was asked for once, then kept: both victims shared it.
      const identityFills = origin.seen.filter((s) => s.url === path && s.headers["accept-encoding"] === "identity");
      expect(identityFills, path).toHaveLength(1);
    }
  });
});

describe("what the origin receives and what the client gets back (Node)", () => {
  it("gzip from the origin is served as gzip bytes labelled Content-Encoding: gzip, on the miss and on hits", async () => {
    const origin = await recordingOrigin();
    const base = await herdless(origin.url);
    const miss = await send(base, "/page", { "accept-encoding": "gzip, deflate, br" });
    const hit = await send(base, "/page", { "accept-encoding": "br;q=0.5, gzip" });
    expect(origin.seen.map((s) => s.headers["accept-encoding"])).toEqual(["br, gzip"]);
    for (const answer of [miss, hit]) {
      expect(answer.status).toBe(200);
      expect(answer.headers["content-encoding"]).toBe("gzip");
      expect(answer.headers.vary).toBe("Accept-Encoding");
      expect(isGzip(answer.bytes)).toBe(true);
      expect(Number(answer.headers["content-length"])).toBe(answer.bytes.byteLength);
      expect(gunzipSync(answer.bytes).toString()).toBe(`${PAGE} lang=en`);
    }
    expect(hit.headers["cache-status"]).toMatch(/hit/);
  });

  it("the origin sees exactly the client's end-to-end headers, plus what herdless adds (docs/http.md)", async () => {
    const origin = await recordingOrigin();
    const base = await herdless(origin.url);
    const endToEnd = {
      "user-agent": "Mozilla/5.0 (X11)",
      accept: "text/html",
      "accept-language": "de",
      "x-api-version": "1",
      "x-requested-with": "XMLHttpRequest",
    };
    await send(base, "/exact", { ...endToEnd, "accept-encoding": "gzip;q=0.5, identity" });
    const fill = origin.seen[0]!;
    const added = [
      "accept-encoding",
      "cdn-loop",
      "host",
      "x-forwarded-for",
      "x-forwarded-proto",
      "via",
      "surrogate-capability",
    ];
    // Connection is the transport's own (hop-by-hop, RFC 9110 §7.6.1): a fill goes on a
    // connection of its own, closed after (origin-agents.ts ownConnection).
    expect(fill.names.filter((name) => name !== "connection").sort()).toEqual(
      [...Object.keys(endToEnd), ...added].sort(),
    );
    expect(fill.headers.connection).toBe("close");
    for (const [name, value] of Object.entries(endToEnd)) expect(fill.headers[name], name).toBe(value);
    // In the client's order, not sorted.
    expect(fill.names.filter((name) => name in endToEnd)).toEqual(Object.keys(endToEnd));
    expect(fill.headers).toMatchObject({
      "accept-encoding": "gzip",
      host: new URL(origin.url).host,
      "x-forwarded-for": "127.0.0.1",
      "x-forwarded-proto": "http",
      via: "1.1 herdless",
      "surrogate-capability": 'herdless="Surrogate/1.0"',
    });
    expect(fill.headers["cdn-loop"]).toMatch(/^herdless; o=[0-9a-f]{8}$/);
  });
});

describe("uploads relayed to the origin (Node)", () => {
  it("RFC 9112 §6.3: a request sent without a body (DELETE, OPTIONS, PURGE, POST) reaches the origin without one, not with a chunked body", async () => {
    const origin = await recordingOrigin();
    const base = await herdless(origin.url);
    for (const method of ["DELETE", "OPTIONS", "PURGE", "POST"]) {
      // Written by hand: neither Content-Length nor Transfer-Encoding, so the request has no content.
      expect((await rawGet(base, "/thing", { method })).status, method).toBe(200);
      const seen = origin.seen.at(-1)!;
      expect(seen.headers["transfer-encoding"], method).toBeUndefined();
      expect(seen.headers["content-length"] ?? "0", method).toBe("0");
    }
    // A body the client did send still goes, with its framing.
    await rawGet(base, "/thing", { method: "DELETE", headers: { "content-length": "2" }, body: "{}" });
    expect(origin.seen.at(-1)!.headers["content-length"]).toBe("2");
  });

  it("a client that goes away mid-upload cuts the origin's request short (never completed with part of the body) and herdless keeps serving", async () => {
    const uploads: { received: number; ended: boolean; aborted: boolean }[] = [];
    const server = createServer((req, res) => {
      const upload = { received: 0, ended: false, aborted: false };
      uploads.push(upload);
      req.on("data", (chunk: Buffer) => (upload.received += chunk.byteLength));
      req.on("end", () => {
        upload.ended = true;
        res.end("stored");
      });
      req.on("error", () => (upload.aborted = true));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanup.push(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    const base = await herdless(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const { hostname, port } = new URL(base);
    const socket = connect(Number(port), hostname);
    await once(socket, "connect");
    // Past what herdless reads before it calls the origin (upload.ts): the rest is streamed.
    socket.write("POST /upload HTTP/1.1\r\nhost: shop.test\r\ncontent-length: 100000\r\n\r\n" + "x".repeat(70_000));
    await expect.poll(() => uploads[0]?.received).toBe(70_000);
    socket.destroy();
    await expect.poll(() => uploads[0]?.aborted).toBe(true);
    expect(uploads[0]!.ended).toBe(false);
    const after = await send(base, "/upload");
    expect([after.status, after.bytes.toString()]).toEqual([200, "stored"]);
    // A small upload left unfinished never reaches the origin at all: it is read whole first.
    const small = connect(Number(port), hostname);
    await once(small, "connect");
    small.write("POST /upload HTTP/1.1\r\nhost: shop.test\r\ncontent-length: 100\r\n\r\n" + "x".repeat(10));
    await new Promise((resolve) => setTimeout(resolve, 50));
    small.destroy();
    expect(uploads).toHaveLength(2);
  });
});

describe("HTTPS origins (Node)", () => {
  // A self-signed certificate for 127.0.0.1, made for these tests only (fixtures/tls).
  const certFile = fileURLToPath(new URL("../../fixtures/tls/origin-cert.pem", import.meta.url));
  const tls = {
    cert: readFileSync(certFile),
    key: readFileSync(fileURLToPath(new URL("../../fixtures/tls/origin-key.pem", import.meta.url))),
  };

  it("an origin whose certificate is not trusted is a 502 naming the certificate error, nothing sent", async () => {
    const origin = await recordingOrigin(tls);
    const base = await herdless(origin.url);
    const answer = await send(base, "/secure");
    expect(answer.status).toBe(502);
    expect(answer.bytes.toString()).toContain("self-signed certificate");
    expect(origin.seen).toHaveLength(0);
  });

  it("a certificate the operator trusts (NODE_EXTRA_CA_CERTS) is verified and the origin answers as over http", async () => {
    const origin = await recordingOrigin(tls);
    const { child, url } = await launchCli(["--origin", origin.url], { NODE_EXTRA_CA_CERTS: certFile });
    cleanup.push(async () => {
      child.kill("SIGTERM");
      if (child.exitCode === null) await once(child, "exit");
    });
    const miss = await send(url, "/secure", { "accept-encoding": "gzip" });
    const hit = await send(url, "/secure", { "accept-encoding": "gzip" });
    for (const answer of [miss, hit]) {
      expect(answer.status).toBe(200);
      expect(answer.headers["content-encoding"]).toBe("gzip");
      expect(gunzipSync(answer.bytes).toString()).toBe(`${PAGE} lang=en`);
    }
    expect(hit.headers["cache-status"]).toMatch(/hit/);
    expect(origin.seen).toHaveLength(1);
    expect(origin.seen[0]!.names.filter((name) => name === "user-agent" || name.startsWith("sec-fetch-"))).toEqual([]);
  });
});
