import { describe, expect, it } from "vitest";
import { workerdDecoding } from "../../src/cloudflare/content-decoding.ts";
import { dataCenter, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const PLAIN = "plain text body";
/** PLAIN in each coding (Node's zlib), base64. */
const ENCODED: Record<string, string> = {
  gzip: "H4sIAAAAAAAAAyvISczMUyhJrShRSMpPqQQA1DqbHQ8AAAA=",
  "x-gzip": "H4sIAAAAAAAAAyvISczMUyhJrShRSMpPqQQA1DqbHQ8AAAA=",
  GZIP: "H4sIAAAAAAAAAyvISczMUyhJrShRSMpPqQQA1DqbHQ8AAAA=",
  deflate: "eJwryEnMzFMoSa0oUUjKT6kEAC5MBcg=",
  br: "Gw4A+KVByujw1CCqlAvYqM4D",
  "gzip, br": "CxGAH4sIAAAAAAAAAyvISczMUyhJrShRSMpPqQQA1DqbHQ8AAAAD",
};

describe("RFC 9110 §8.4 Content-Encoding on the Worker", () => {
  it.each(Object.keys(ENCODED))("workerdDecoding says what workerd's fetch does with %j", async (coding) => {
    const origin = await testOrigin({ headers: { "content-encoding": coding }, bodyBase64: ENCODED[coding]! });
    const res = await fetch(`${origin.url}/probe`);
    const decoded = new TextDecoder().decode(await res.arrayBuffer()) === PLAIN;
    expect(workerdDecoding(coding)).toBe(decoded);
  });

  it("a body workerd did not decode keeps its label and bytes; a decoded one loses the label", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60" },
      paths: {
        "/deflated": {
          headers: { "cache-control": "max-age=60", "content-encoding": "deflate" },
          bodyBase64: ENCODED.deflate!,
        },
        "/gzipped": {
          headers: { "cache-control": "max-age=60", "content-encoding": "gzip" },
          bodyBase64: ENCODED.gzip!,
        },
      },
    });
    const dc = dataCenter(`cc-${crypto.randomUUID()}`, edgeEnv(origin.url));
    for (let i = 0; i < 2; i++) {
      // The fill, then the hit: both carry the same truth.
      const deflated = await dc.get("/deflated");
      expect(deflated.headers.get("content-encoding")).toBe("deflate");
      expect(deflated.body).not.toBe(PLAIN);
      const gzipped = await dc.get("/gzipped");
      expect(gzipped.headers.get("content-encoding")).toBeNull();
      expect(gzipped.body).toBe(PLAIN);
    }
  });
});

describe("RFC 9110 §8.8.3 a body workerd decoded is another representation", () => {
  it("its strong ETag is weakened and its digests dropped: a resume with the gzip bytes' tag gets the whole body", async () => {
    const origin = await testOrigin({
      headers: {
        "cache-control": "max-age=60, no-transform",
        "content-encoding": "gzip",
        etag: '"gz-1"',
        "content-digest": "sha-256=:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=:",
        "repr-digest": "sha-256=:n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=:",
      },
      bodyBase64: ENCODED.gzip!,
    });
    const dc = dataCenter(`cc-${crypto.randomUUID()}`, edgeEnv(origin.url));
    for (let i = 0; i < 2; i++) {
      const page = await dc.get("/file");
      expect(page.body).toBe(PLAIN);
      expect(page.headers.get("etag")).toBe('W/"gz-1"');
      expect(page.headers.get("content-digest")).toBeNull();
      expect(page.headers.get("repr-digest")).toBeNull();
      await page.settled;
    }
    // A client holding the first bytes of the gzip representation (fetched from the origin
    // itself) asks for the rest: the decoded bytes are not its continuation.
    const resume = await dc.get("/file", { headers: { range: "bytes=5-", "if-range": '"gz-1"' } });
    expect(resume.status).toBe(200);
    expect(resume.body).toBe(PLAIN);
    expect(await origin.count()).toBe(1);
  });
});
