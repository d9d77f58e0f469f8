/**
 * Origin header values in UTF-8 on the Worker. workerd reads header bytes as UTF-8, so a
 * value such as a raw UTF-8 download name reaches the Worker with characters past U+00FF;
 * herdless relays and stores it as it relays any other obs-text value, and workerd writes it
 * back as the origin's bytes.
 */
import { describe, expect, it } from "vitest";
import { dataCenters, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/** The UTF-8 bytes of `text`, one latin1 character per byte: how the test origin writes raw lines. */
function utf8Bytes(text: string): string {
  return String.fromCharCode(...new TextEncoder().encode(text));
}

describe("origin fields in UTF-8 on the Worker", () => {
  it("a UTF-8 Content-Disposition and Location reach the client on the miss and on the hit", async () => {
    const disposition = 'attachment; filename="résumé-日本.pdf"';
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      rawHeaderLines: utf8Bytes(`Content-Disposition: ${disposition}\r\nX-Price: €5\r\n`),
    });
    const [a, b] = dataCenters(2, edgeEnv(origin.url));
    const miss = await a!.get("/download");
    await miss.settled;
    const hit = await b!.get("/download");
    for (const answer of [miss, hit]) {
      expect([answer.status, answer.headers.get("content-disposition"), answer.headers.get("x-price")]).toEqual([
        200,
        disposition,
        "€5",
      ]);
    }
    expect(hit.cacheStatus).toMatch(/^herdless; hit/);
    expect(await origin.count()).toBe(1);
  });

  it("behind a 103 Early Hints, a UTF-8 value arrives as sent, not re-encoded", async () => {
    // workerd hands the answer after a 103 over unparsed (interim-fetch.ts reads it back).
    const origin = await testOrigin({
      earlyHints: true,
      headers: { "cache-control": "max-age=60" },
      rawHeaderLines: utf8Bytes('Content-Disposition: attachment; filename="日本.pdf"\r\nX-Accent: caf\u00e9\r\n'),
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const res = await dc!.get("/hinted");
    expect([res.status, res.headers.get("content-disposition"), res.headers.get("x-accent")]).toEqual([
      200,
      'attachment; filename="日本.pdf"',
      "café",
    ]);
  });

  it("a redirect to a UTF-8 path keeps its Location", async () => {
    const origin = await testOrigin({
      status: 302,
      headers: { "cache-control": "max-age=60" },
      rawHeaderLines: utf8Bytes("Location: /über/日本\r\n"),
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const res = await dc!.get("/go", { redirect: "manual" });
    expect([res.status, res.headers.get("location")]).toEqual([302, "/über/日本"]);
  });
});
