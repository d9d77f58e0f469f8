/**
 * An origin answer that ends with a trailer section (RFC 9112 §7.1.2) on a kept-alive
 * connection: workerd's HTTP client does not read the trailer section, so its bytes wait on the
 * pooled connection and are read as the next request's answer, which fails as unparsable
 * (vitest.workers.setup.ts, `trailerOrigin`). Each test starts and ends with at most one clean
 * connection in workerd's pool, which `seen()` takes and closes; a breaker that opens on the
 * first failure shows a failure wrongly counted.
 */
import { describe, expect, inject, it } from "vitest";
import { dataCenters, edgeEnv } from "./edge-harness.ts";

const origin = inject("herdlessTrailerOrigin");
const strict = {
  origin: { maxConcurrency: 1, timeoutMs: 2_000 },
  breaker: { failureThreshold: 1, backoffBaseMs: 0 },
};

/** What the origin saw since it was last asked, oldest first (one on a reused connection is marked). */
async function seen(): Promise<string[]> {
  return (await (await fetch(`${origin}/__seen`)).json()) as string[];
}

describe("an origin answer with trailers, then another URL on its connection (Worker)", () => {
  it("the innocent GET right after is asked again on a new connection: the visitor gets the page, the breaker stays closed", async () => {
    await seen();
    const [dc] = dataCenters(1, edgeEnv(origin, strict));
    const trailed = await dc!.get("/trailer/a");
    await trailed.settled;
    expect([trailed.status, trailed.body]).toEqual([200, "/trailer/a"]);
    // At once: the connection was used a moment ago, and the trailer bytes are there already.
    const innocent = await dc!.get("/b");
    await innocent.settled;
    expect([innocent.status, innocent.body]).toEqual([200, "/b"]);
    const head = await dc!.get("/c", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await seen()).toEqual(["GET /trailer/a", "GET /b (kept-alive)", "GET /b", "GET /c (kept-alive)"]);
  });

  it("a POST is never asked twice (the origin acted on it); its 502 opens no breaker: the next page is served", async () => {
    await seen();
    const [dc] = dataCenters(1, edgeEnv(origin, strict));
    const trailed = await dc!.get("/trailer/d");
    await trailed.settled;
    const post = await dc!.get("/order", { method: "POST", body: "{}" });
    expect(post.status).toBe(502);
    const next = await dc!.get("/e");
    await next.settled;
    expect([next.status, next.body]).toEqual([200, "/e"]);
    expect(await seen()).toEqual(["GET /trailer/d", "POST /order (kept-alive)", "GET /e"]);
  });

  it("an origin that answers malformed is asked once more after a good answer, then once per request until it answers well again", async () => {
    await seen();
    const [dc] = dataCenters(1, edgeEnv(origin, strict));
    const good = await dc!.get("/f");
    await good.settled;
    for (const path of ["/malformed/1", "/malformed/2"]) {
      const bad = await dc!.get(path);
      expect(bad.status).toBe(502);
      expect(bad.body).toMatch(/is not valid HTTP\/1\.1 \(workerd: /);
    }
    const after = await dc!.get("/g");
    await after.settled;
    expect([after.status, after.body]).toEqual([200, "/g"]);
    expect(await seen()).toEqual([
      "GET /f",
      "GET /malformed/1 (kept-alive)",
      "GET /malformed/1",
      "GET /malformed/2",
      "GET /g",
    ]);
  });
});

describe("an origin answer framed both chunked and by a Content-Length (Worker)", () => {
  it("is refused whole, a 502 naming it, as Node refuses it: never relayed with the origin's `Content-Length: 0`, which gave a signed-in visitor an empty page that looked complete", async () => {
    await seen();
    const [dc] = dataCenters(1, edgeEnv(origin, strict));
    const relayed = await dc!.get("/length-and-chunked/a", { headers: { cookie: "session=1" } });
    await relayed.settled;
    expect([relayed.status, relayed.body]).toMatchObject([502, expect.stringMatching(/Transfer-Encoding/)]);
    const filled = await dc!.get("/length-and-chunked/b");
    await filled.settled;
    expect([filled.status, filled.body]).toMatchObject([502, expect.stringMatching(/Transfer-Encoding/)]);
    // A malformed answer is the origin's fault, not a sign it is down: the next page is served.
    const next = await dc!.get("/h");
    await next.settled;
    expect([next.status, next.body]).toEqual([200, "/h"]);
    await seen();
  });
});
