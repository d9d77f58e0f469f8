import { afterEach, describe, expect, it, vi } from "vitest";
import { get, herdless, servingOrigin } from "./attack-kit.ts";

/**
 * Purge tags attacked through the Node server (its socket hit path included): the tags are
 * the origin's words, and the origin may take them from what a user wrote (a blog post's
 * tags, a search term). Each test is the attacker's page, then the visitors'.
 */

const TOKEN = "node-purge-attack-token-0123";
const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** The operator's purge through the admin API. */
function purge(base: string, command: object) {
  const body = JSON.stringify(command);
  return get(base, "/__herdless/purge", {
    method: "POST",
    headers: {
      authorization: `Bearer ${TOKEN}`,
      "content-type": "application/json",
      "content-length": `${body.length}`,
    },
    body,
  });
}

describe("security: purge tags named like an object's own fields (Node)", () => {
  it("a page tagged constructor, toString or __proto__ is a hit like any other, and a purge of __proto__ purges it", async () => {
    let requests = 0;
    const tags: Record<string, string> = { "/tag/ctor": "constructor", "/tag/proto": "__proto__, toString" };
    const origin = await servingOrigin((req, res) => {
      requests++;
      const headers = { "cache-control": "max-age=60", "cache-tag": tags[req.url ?? ""] ?? "plain" };
      res.writeHead(200, headers).end(`${req.url} #${requests}`);
    }, cleanup);
    const proxy = await herdless(origin, { admin: { token: TOKEN, purgePropagationMs: 10 } });
    cleanup.push(() => proxy.close());

    for (const path of ["/tag/ctor", "/tag/proto"]) {
      const first = await get(proxy.base, path);
      const visitor = await get(proxy.base, path);
      expect(visitor.status).toBe(200);
      expect(visitor.body).toBe(first.body);
      // Before: every request read the page as purged (a mark found on Object.prototype), one origin request each.
      expect(visitor.headers["cache-status"]).toMatch(/^herdless; hit; ttl=60$/);
    }
    expect(requests).toBe(2);

    expect((await purge(proxy.base, { tags: ["__proto__"] })).status).toBe(200);
    proxy.clock.advance(1); // entries stored after this instant are newer than the purge
    // Before: `tags["__proto__"] = mark` set the list's prototype and the purge was lost.
    const purged = await get(proxy.base, "/tag/proto");
    expect(purged.body).toBe("/tag/proto #3");
    expect(purged.headers["cache-status"]).toMatch(/fwd=uri-miss/);
    const kept = await get(proxy.base, "/tag/ctor");
    expect(kept.body).toBe("/tag/ctor #1");
    expect(kept.headers["cache-status"]).toMatch(/^herdless; hit;/);
    expect(requests).toBe(3);
  });

  it("a page being fetched when the operator purges it is not kept nor handed to a later visitor: the old version is never served after the purge returned", async () => {
    let version = 1;
    let requests = 0;
    let held: (() => void) | undefined;
    const origin = await servingOrigin((req, res) => {
      requests++;
      const answer = `${req.url} v${version}`;
      const send = () => res.writeHead(200, { "cache-control": "max-age=60" }).end(answer);
      if (requests === 1) held = send;
      else send();
    }, cleanup);
    const proxy = await herdless(origin, { admin: { token: TOKEN, purgePropagationMs: 10 } });
    cleanup.push(() => proxy.close());

    const first = get(proxy.base, "/news");
    await vi.waitFor(() => expect(held).toBeDefined());
    // The origin has answered v1 (held on its way); the editor publishes v2, then purges.
    version = 2;
    proxy.clock.advance(1_000);
    expect((await purge(proxy.base, { urls: ["http://shop.test/news"] })).status).toBe(200);
    proxy.clock.advance(1_000);
    // A visitor arriving after the purge returned, while the fetch it overtook still runs.
    const joiner = get(proxy.base, "/news");
    // Real time for ordering only: the visitor reaches the running fetch before it answers.
    await new Promise((resolve) => setTimeout(resolve, 200));
    held!();
    // The request that asked before the purge gets what it asked for.
    expect((await first).body).toBe("/news v1");
    // Before: the visitor was handed the old page, collapsed onto that fetch.
    expect((await joiner).body).toBe("/news v2");
    // Before: that answer, arriving after the purge, was stored and every visitor's hit for 60 s.
    const visitor = await get(proxy.base, "/news");
    expect(visitor.body).toBe("/news v2");
    expect(visitor.headers["cache-status"]).toMatch(/^herdless; hit;/);
    expect(requests).toBe(2);
  });
});

describe("security: a purged copy never stands in for the origin's failure (Node)", () => {
  it("a copy the operator hard-purged while its revalidation ran is never served stale-if-error, to a visitor after the purge returned nor to the request that led that revalidation", async () => {
    let down = false;
    let requests = 0;
    const origin = await servingOrigin((req, res) => {
      requests++;
      // An outage: the origin holds the request, then resets it (herdless asks once more on a new connection).
      if (down) return void setTimeout(() => req.socket.destroy(), 400);
      res.writeHead(200, { "cache-control": "max-age=1" }).end(`secret v${requests}`);
    }, cleanup);
    const proxy = await herdless(origin, { admin: { token: TOKEN, purgePropagationMs: 10 } });
    cleanup.push(() => proxy.close());
    expect((await get(proxy.base, "/leak")).body).toBe("secret v1");
    proxy.clock.advance(2_000);
    down = true;
    // The copy expired; its revalidation is in flight when the operator purges the page.
    const leader = get(proxy.base, "/leak");
    await vi.waitFor(() => expect(requests).toBe(2));
    proxy.clock.advance(5);
    expect((await purge(proxy.base, { urls: ["http://shop.test/leak"] })).status).toBe(200);
    proxy.clock.advance(5);
    // Before: both joined that revalidation, and its failure was hidden behind the purged copy
    // it had read before the purge (200 secret v1, detail=stale-if-error).
    const visitor = await get(proxy.base, "/leak");
    for (const answer of [visitor, await leader]) {
      expect(answer.status).toBe(502);
      expect(answer.body).not.toContain("secret v1");
      expect(answer.headers["cache-status"]).toMatch(/detail=origin-error$/);
    }
  });
});

describe("security: one page under many spellings of its URL (Node)", () => {
  it("an attacker's /%70age, %-case and a Host's trailing dot store nothing apart: one origin request, asked by the plain spelling, and the operator's purge of /page purges what they stored", async () => {
    const asked: string[] = [];
    const origin = await servingOrigin((req, res) => {
      asked.push(`${req.headers.host} ${req.url}`);
      res.writeHead(200, { "cache-control": "max-age=60" }).end(`v${asked.length}`);
    }, cleanup);
    const proxy = await herdless(origin, {
      admin: { token: TOKEN, purgePropagationMs: 10 },
      origin: { hostHeader: "client" },
    });
    cleanup.push(() => proxy.close());

    // The attacker stores the page under spellings of its own, each a key before.
    for (const [target, host] of [
      ["/%70age/caf%c3%a9", "shop.test"],
      ["/page/caf%C3%A9", "shop.test."],
      ["/p%61ge/caf%C3%a9", "SHOP.test"],
    ])
      expect((await get(proxy.base, target!, { headers: { host: host! } })).body).toBe("v1");
    expect(asked).toEqual(["shop.test /page/caf%C3%A9"]);

    // The operator purges the page as its visitors spell it; every spelling's copy goes.
    expect((await purge(proxy.base, { urls: ["http://shop.test/page/caf%C3%A9"] })).status).toBe(200);
    proxy.clock.advance(1);
    const victim = await get(proxy.base, "/%70age/caf%c3%a9", { headers: { host: "shop.test." } });
    expect(victim.body).toBe("v2");
    expect(victim.headers["cache-status"]).toMatch(/fwd=uri-miss/);
    expect(asked).toEqual(["shop.test /page/caf%C3%A9", "shop.test /page/caf%C3%A9"]);
  });
});
