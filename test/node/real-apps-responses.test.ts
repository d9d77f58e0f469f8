/**
 * What real applications answer, behind herdless on Node (one process and a Redis fleet):
 * nothing one visitor's request made of the answer reaches another visitor. Each test is the
 * first (or the attacker's) request, then the victim's. The Worker twin is
 * test/cloudflare/edge-real-apps-responses.test.ts.
 */
import type { RequestListener } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { servingOrigin } from "./attack-kit.ts";
import { deploy, send, type Deployment } from "./deployment.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});

async function site(kind: "node" | "fleet", handler: RequestListener): Promise<Deployment> {
  const origin = await servingOrigin(handler, cleanup);
  const deployment = await deploy(kind, origin, {});
  cleanup.push(() => deployment.close());
  return deployment;
}

describe.each(["node", "fleet"] as const)("CORS granted by reflecting Origin, without Vary: Origin (%s)", (kind) => {
  it("an attacker's Origin is never the one a visitor's copy grants", async () => {
    let requests = 0;
    // nginx's `add_header Access-Control-Allow-Origin $http_origin always;` in front of an API.
    const { urls } = await site(kind, (req, res) => {
      requests++;
      const origin = req.headers.origin;
      const cors = origin ? { "access-control-allow-origin": origin, "access-control-allow-credentials": "true" } : {};
      res.writeHead(200, { "content-type": "application/json", "cache-control": "max-age=60", ...cors });
      res.end(`{"n":${requests}}`);
    });
    const attacker = await send(urls[0]!, "/api/items", { headers: { origin: "https://evil.test" } });
    expect(attacker.headers["access-control-allow-origin"]).toBe("https://evil.test");
    const app = { origin: "https://app.shop.test" };
    const victim = await send(urls.at(-1)!, "/api/items", { headers: app });
    expect(victim.status).toBe(200);
    expect(victim.headers["access-control-allow-origin"]).toBe("https://app.shop.test");
    const visitor = await send(urls.at(-1)!, "/api/items");
    expect(visitor.headers["access-control-allow-origin"]).toBeUndefined();
    // Each origin's copy is still shared by everyone who asks from it.
    const again = await send(urls[0]!, "/api/items", { headers: app });
    expect(again.headers["access-control-allow-origin"]).toBe("https://app.shop.test");
    expect(again.cacheStatus).toMatch(/hit/);
    expect(requests).toBe(3);
  });

  it("`Access-Control-Allow-Origin: *` keeps one copy for every origin", async () => {
    let requests = 0;
    const { urls } = await site(kind, (_req, res) => {
      requests++;
      res.writeHead(200, { "cache-control": "max-age=60", "access-control-allow-origin": "*" }).end("font");
    });
    await send(urls[0]!, "/font.woff2", { headers: { origin: "https://a.test" } });
    const other = await send(urls.at(-1)!, "/font.woff2", { headers: { origin: "https://b.test" } });
    expect(other.cacheStatus).toMatch(/hit/);
    expect(requests).toBe(1);
  });
});

/**
 * A language negotiation that sends `Vary: Accept-Language` only when it read the header, as
 * many do: a request without it is answered the default page without Vary. `varies` off, the
 * origin stops varying altogether.
 */
function negotiating(origin: { requests: number; varies: boolean }): RequestListener {
  return (req, res) => {
    origin.requests++;
    const language = req.headers["accept-language"];
    const vary = origin.varies && language ? { vary: "Accept-Language" } : {};
    res.writeHead(200, { "cache-control": "max-age=60", "content-type": "text/plain", ...vary });
    res.end(`${origin.varies ? (language ?? "default") : "one page"} #${origin.requests}`);
  };
}

describe.each(["node", "fleet"] as const)("Vary sent only to a request that has the header (%s)", (kind) => {
  const fr = { headers: { "accept-language": "fr" } };

  it("an attacker's request without it never becomes every language's page", async () => {
    const origin = { requests: 0, varies: true };
    const { urls } = await site(kind, negotiating(origin));
    expect((await send(urls[0]!, "/home", fr)).body).toBe("fr #1");
    const attacker = await send(urls[0]!, "/home");
    expect(attacker.body).toBe("default #2");
    for (const url of [urls[0]!, urls.at(-1)!]) {
      const victim = await send(url, "/home", fr);
      expect(victim.body).toBe("fr #1");
      expect(victim.cacheStatus).toMatch(/hit/);
    }
    expect((await send(urls.at(-1)!, "/home", { headers: { "accept-language": "de" } })).body).toBe("de #3");
    // The request without the header still has its own copy, shared by everyone who sends none.
    const crawler = await send(urls.at(-1)!, "/home");
    expect(crawler.body).toBe("default #2");
    expect(crawler.cacheStatus).toMatch(/hit/);
    expect(origin.requests).toBe(3);
  });

  it("a page that stopped varying is one copy again once the variants that named the header are gone", async () => {
    const origin = { requests: 0, varies: true };
    const deployment = await deploy(kind, await servingOrigin(negotiating(origin), cleanup), {
      cache: { retainStaleMs: 60_000 },
    });
    cleanup.push(() => deployment.close());
    const [url] = deployment.urls;
    await send(url!, "/home", fr); // fr's copy, named by its Vary: kept until 120 s from now.
    origin.varies = false;
    deployment.clock.advance(100_000);
    // fr's copy may still be stored: the answer without Vary is the variant of its request alone.
    expect((await send(url!, "/home")).body).toBe("one page #2");
    expect((await send(url!, "/home", { headers: { "accept-language": "ja" } })).body).toBe("one page #3");
    deployment.clock.advance(30_000);
    expect((await send(url!, "/home", { headers: { "accept-language": "de" } })).body).toBe("one page #4");
    const languages: Record<string, string>[] = [{ "accept-language": "ko" }, {}, { "accept-language": "fr" }];
    for (const headers of languages) {
      const answer = await send(url!, "/home", { headers });
      expect(answer.body).toBe("one page #4");
      expect(answer.cacheStatus).toMatch(/hit/);
    }
    expect(origin.requests).toBe(4);
  });
});

/**
 * An origin that writes past the end of its answer, on a kept-alive connection: a PHP notice
 * echoed after a body whose Content-Length was set first, a HEAD or a 204 answered with a body.
 * When the bytes past the end spell an answer (here a page the attacker wrote), a client that
 * keeps them for the connection's next request serves them as that request's answer.
 */
const SPILLED = "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 6\r\n\r\nPWNED!";
const OVERRUNS: Record<string, string> = {
  "/comment": `HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello${SPILLED}`,
  "/ping": `HTTP/1.1 204 No Content\r\nCache-Control: max-age=60\r\n\r\n${SPILLED}`,
  "/probe": `HTTP/1.1 200 OK\r\nCache-Control: private\r\nContent-Length: ${SPILLED.length}\r\n\r\n${SPILLED}`,
};

describe.each(["node", "fleet"] as const)("an origin answer that runs past its end (%s)", (kind) => {
  it.each([
    ["a body longer than its Content-Length", "/comment", "GET"],
    ["a 204 with a body", "/ping", "GET"],
    ["a HEAD answered with a body", "/probe", "HEAD"],
  ])("%s never becomes the next page's answer", async (_, path, method) => {
    const origin = await keptAliveOrigin();
    const deployment = await deploy(kind, origin, { origin: { maxConcurrency: 1 } });
    cleanup.push(() => deployment.close());
    const [url] = deployment.urls;
    // The HEAD is relayed (a Cookie), as only requests herdless relays reach the origin as HEAD.
    await send(url!, path, { method, headers: method === "HEAD" ? { cookie: "a=1" } : {} });
    const victim = await send(url!, "/home");
    expect(victim.body).toBe("page /home");
    expect((await send(url!, "/home")).body).toBe("page /home");
  });
});

/** An origin on raw sockets that keeps every connection open and answers each request in turn. */
async function keptAliveOrigin(): Promise<string> {
  const open = new Set<Socket>();
  const server = createNetServer((socket) => {
    open.add(socket);
    let pending = "";
    socket.on("error", () => undefined);
    socket.on("data", (data: Buffer) => {
      pending += data.toString("latin1");
      for (let end = pending.indexOf("\r\n\r\n"); end !== -1; end = pending.indexOf("\r\n\r\n")) {
        const path = pending.split(" ")[1] ?? "/";
        pending = pending.slice(end + 4);
        const body = `page ${path}`;
        socket.write(
          OVERRUNS[path] ??
            `HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        );
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(async () => {
    for (const socket of open) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe.each(["node", "fleet"] as const)("Next.js's internal request headers, sent by an attacker (%s)", (kind) => {
  it("never reach the origin: the page stored for everyone is its HTML, and middleware still runs", async () => {
    const seen: string[] = [];
    // A pages-router page before Next.js's fixes: its internal headers turn the page into its
    // data (CVE-2024-46982), an empty prefetch answer (CVE-2023-46298), its error page answered
    // with the status the client named (x-invoke-status, before June 2024) or another page
    // (x-invoke-path, x-matched-path), or skip the middleware that signs the visitor in
    // (CVE-2025-29927), all marked for shared caches.
    const forged: Record<string, string> = {
      "x-now-route-matches": "1",
      "x-middleware-prefetch": "1",
      "x-invoke-status": "200",
      "x-invoke-path": "/admin",
      "x-matched-path": "/admin",
    };
    const { urls } = await site(kind, (req, res) => {
      const h = req.headers;
      seen.push(...[...Object.keys(forged), "x-middleware-subrequest"].filter((n) => h[n]));
      const isr = { "cache-control": "s-maxage=60, stale-while-revalidate" };
      if (h["x-middleware-subrequest"]) return void res.writeHead(200, isr).end("the account page, unguarded");
      if (req.url === "/account") return void res.writeHead(307, { location: "/login" }).end();
      if (h["x-now-route-matches"]) return void res.writeHead(200, isr).end('{"pageProps":{}}');
      if (h["x-middleware-prefetch"]) return void res.writeHead(200, isr).end("{}");
      const status = h["x-invoke-status"];
      if (status) return void res.writeHead(Number(status), isr).end("<html>Internal Server Error</html>");
      if (h["x-invoke-path"] ?? h["x-matched-path"]) return void res.writeHead(200, isr).end("<html>admin</html>");
      res.writeHead(200, { ...isr, "content-type": "text/html" }).end("<html>the blog</html>");
    });
    for (const [header, value] of Object.entries(forged)) {
      const path = `/blog-${header}`;
      await send(urls[0]!, path, { headers: { [header]: value } });
      expect((await send(urls.at(-1)!, path)).body, header).toBe("<html>the blog</html>");
    }
    const unguarded = await send(urls[0]!, "/account", {
      headers: { "x-middleware-subrequest": "middleware:middleware:middleware:middleware:middleware" },
    });
    expect(unguarded.status).toBe(307);
    expect(seen).toEqual([]);
  });
});

describe.each(["node", "fleet"] as const)(
  'a page kept with no-cache="Set-Cookie", as ASP.NET sends it (%s)',
  (kind) => {
    it("gives its first visitor the session begun for it, and nobody else that session", async () => {
      let sessions = 0;
      const { urls } = await site(kind, (_req, res) => {
        sessions++;
        res.writeHead(200, {
          "cache-control": 'public, max-age=60, no-cache="Set-Cookie"',
          "set-cookie": `ASP.NET_SessionId=s${sessions}; path=/; HttpOnly`,
          "content-type": "text/html",
        });
        res.end("<html>the catalogue</html>");
      });
      const first = await send(urls[0]!, "/catalogue");
      expect(first.headers["set-cookie"]).toEqual(["ASP.NET_SessionId=s1; path=/; HttpOnly"]);
      for (const url of urls) {
        const next = await send(url, "/catalogue");
        expect(next.body).toBe("<html>the catalogue</html>");
        expect(next.headers["set-cookie"]).toBeUndefined();
      }
      expect(sessions).toBe(1);
    });
  },
);
