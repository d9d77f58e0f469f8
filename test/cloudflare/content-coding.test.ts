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
