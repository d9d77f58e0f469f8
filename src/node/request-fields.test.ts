import { describe, expect, it } from "vitest";
import { emptyScan as fresh, ENGINE_FIELDS, scanFields } from "./request-fields.ts";

describe("scanFields: the one pass over a request's fields", () => {
  // A field the scan reads for itself (Host, X-Forwarded-Proto, Transfer-Encoding) shares its
  // length with others: If-Modified-Since is as long as X-Forwarded-Proto, and a branch on the
  // length once swallowed it, so a conditional request took the hit path and got a 200.
  it.each([...ENGINE_FIELDS])("%s, in any case, makes the request no plain one", (name) => {
    for (const spelling of [name, name.toUpperCase()]) {
      const scan = scanFields(["Host", "site.test", spelling, "x", "Accept", "*/*"], fresh());
      expect(scan.plain, spelling).toBe(false);
      expect(scan).toMatchObject({ hosts: 1, host: "site.test" });
    }
  });

  it("reads Host, the first X-Forwarded-Proto and every Transfer-Encoding, and leaves a request without engine fields plain", () => {
    const raw = ["host", "a.test", "X-Forwarded-Proto", "https", "x-forwarded-proto", "http"];
    const scan = scanFields([...raw, "Transfer-Encoding", "gzip", "transfer-encoding", "chunked"], fresh());
    expect(scan).toEqual({ hosts: 1, host: "a.test", plain: true, proto: "https", transferEncoding: "gzip, chunked" });
  });
});
