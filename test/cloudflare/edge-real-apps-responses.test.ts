/**
 * What real applications answer, behind the Worker: nothing one visitor's request made of the
 * answer reaches another visitor. Each test is the first (or the attacker's) request, then the
 * victim's, through two data centers. The Node twin is test/node/real-apps-responses.test.ts.
 */
import { describe, expect, it } from "vitest";
import { dataCenters, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

describe("CORS granted by reflecting Origin, without Vary: Origin", () => {
  it("an attacker's Origin is never the one a visitor's copy grants", async () => {
    const origin = await testOrigin({ reflectOrigin: true, headers: { "cache-control": "max-age=60" } });
    const [here, there] = dataCenters(2, edgeEnv(origin.url));
    const attacker = await here!.get("/api/items", { headers: { origin: "https://evil.test" } });
    expect(attacker.headers.get("access-control-allow-origin")).toBe("https://evil.test");
    await attacker.settled;
    const app = { origin: "https://app.shop.test" };
    for (const dc of [here!, there!]) {
      const victim = await dc.get("/api/items", { headers: app });
      expect(victim.headers.get("access-control-allow-origin")).toBe("https://app.shop.test");
      await victim.settled;
    }
    const visitor = await there!.get("/api/items");
    expect(visitor.headers.get("access-control-allow-origin")).toBeNull();
    await visitor.settled;
    // Each origin's copy is still shared by everyone who asks from it.
    const again = await here!.get("/api/items", { headers: app });
    expect(again.headers.get("access-control-allow-origin")).toBe("https://app.shop.test");
    expect(again.cacheStatus).toMatch(/hit/);
    expect(await origin.count()).toBe(3);
  });

  it("`Access-Control-Allow-Origin: *` keeps one copy for every origin", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60", "access-control-allow-origin": "*" },
    });
    const [here, there] = dataCenters(2, edgeEnv(origin.url));
    await (
      await here!.get("/font.woff2", { headers: { origin: "https://a.test" } })
    ).settled;
    const other = await there!.get("/font.woff2", { headers: { origin: "https://b.test" } });
    expect(other.status).toBe(200);
    expect(await origin.count()).toBe(1);
  });
});

describe("Vary sent only to a request that has the header", () => {
  it("an attacker's request without it never becomes every language's page", async () => {
    // A language negotiation that sends `Vary: Accept-Language` only when it read the header.
    const page = { "cache-control": "max-age=60" };
    const origin = await testOrigin({
      headers: page,
      byHeader: { "accept-language": { headers: { ...page, vary: "Accept-Language" } } },
    });
    const [here, there] = dataCenters(2, edgeEnv(origin.url));
    const fr = { headers: { "accept-language": "fr" } };
    const first = await here!.get("/home", fr);
    expect(first.body).toBe("/home #1");
    await first.settled;
    const attacker = await here!.get("/home");
    expect(attacker.body).toBe("/home #2");
    await attacker.settled;
    for (const dc of [here!, there!]) {
      const victim = await dc.get("/home", fr);
      expect(victim.body).toBe("/home #1");
      expect(victim.cacheStatus).toMatch(/hit/);
      await victim.settled;
    }
    const de = await there!.get("/home", { headers: { "accept-language": "de" } });
    expect(de.body).toBe("/home #3");
    await de.settled;
    // The request without the header still has its own copy, shared by everyone who sends none.
    const crawler = await there!.get("/home");
    expect(crawler.body).toBe("/home #2");
    expect(crawler.cacheStatus).toMatch(/hit/);
    expect(await origin.count()).toBe(3);
  });
});

describe("Next.js's internal request headers, sent by an attacker", () => {
  it("never reach the origin: the page stored for everyone is its HTML, and middleware still runs", async () => {
    // A pages-router page before Next.js's fixes (CVE-2024-46982, CVE-2023-46298, CVE-2025-29927;
    // x-invoke-status answered the error page with the client's status before June 2024).
    const isr = { "cache-control": "s-maxage=60, stale-while-revalidate" };
    const origin = await testOrigin({
      headers: { ...isr, "content-type": "text/html" },
      body: "<html>the blog</html>",
      byHeader: {
        "x-middleware-subrequest": { body: "the account page, unguarded", status: 200, headers: isr },
        "x-now-route-matches": { body: '{"pageProps":{}}', headers: isr },
        "x-middleware-prefetch": { body: "{}", headers: isr },
        "x-invoke-status": { body: "<html>Internal Server Error</html>", status: 200, headers: isr },
        "x-invoke-path": { body: "<html>admin</html>", headers: isr },
        "x-matched-path": { body: "<html>admin</html>", headers: isr },
      },
      paths: { "/account": { status: 307, headers: { location: "/login" }, body: "" } },
    });
    const [here, there] = dataCenters(2, edgeEnv(origin.url));
    const forged = [
      "x-now-route-matches",
      "x-middleware-prefetch",
      "x-invoke-status",
      "x-invoke-path",
      "x-matched-path",
    ];
    for (const header of forged) {
      const path = `/blog-${header}`;
      await (
        await here!.get(path, { headers: { [header]: header === "x-invoke-status" ? "200" : "/admin" } })
      ).settled;
      expect((await there!.get(path)).body, header).toBe("<html>the blog</html>");
    }
    const unguarded = await here!.get("/account", {
      headers: { "x-middleware-subrequest": "middleware:middleware:middleware:middleware:middleware" },
      redirect: "manual",
    });
    expect(unguarded.status).toBe(307);
    const names = (await origin.stats()).requests.flatMap((r) => Object.keys(r.headers));
    expect(names.filter((name) => name.startsWith("x-middleware") || forged.includes(name))).toEqual([]);
  });
});
