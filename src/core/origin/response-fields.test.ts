import { describe, expect, it } from "vitest";
import { fetchStandardDecoding, isValidField, responseHeaders } from "./response-fields.ts";

describe("RFC 9110 §5.1, §5.5 field validity", () => {
  it("accepts tokens, visible text with HTAB and obs-text (UTF-8 too); refuses CR, LF, NUL, other controls, DEL and U+FFFD", () => {
    expect(isValidField("x-a", "v\tw ~")).toBe(true);
    // obs-text: latin1 bytes as Node reads them, UTF-8 text as workerd reads it.
    for (const value of ["caf\u00e9", 'attachment; filename="日本.pdf"', "€5", "\u0080\u00ff"])
      expect(isValidField("x-a", value)).toBe(true);
    for (const value of ["a\rb", "a\nb", "a\u0000b", "a\u0001b", "a\u007fb", "caf\ufffd"])
      expect(isValidField("x-a", value)).toBe(false);
    for (const name of ["x a", "x:a", "", "x\u00e9"]) expect(isValidField(name, "v")).toBe(false);
  });
});

describe("RFC 9110 §8.4 which codings a runtime's fetch decodes", () => {
  it("knows which lists undici decodes: only gzip, x-gzip, deflate and br, all of them", () => {
    expect(fetchStandardDecoding("GZIP")).toBe(true);
    expect(fetchStandardDecoding("gzip, br")).toBe(true);
    expect(fetchStandardDecoding("gzip, identity")).toBe(false);
    expect(fetchStandardDecoding("zstd")).toBe(false);
  });
});

describe("RFC 9110 §7.6.1 fields the origin names in Connection", () => {
  it("are never passed on, and an end-to-end one is reported dropped, so storage knows the response is missing it", () => {
    const origin = new Headers({
      connection: "keep-alive, Vary, x-hop",
      "keep-alive": "timeout=5",
      vary: "X-Lang",
      "x-hop": "1",
      "cache-control": "max-age=60",
    });
    const { headers, dropped } = responseHeaders(origin);
    expect(headers).toEqual([["cache-control", "max-age=60"]]);
    expect(dropped.sort()).toEqual(["vary", "x-hop"]);
  });
});

describe("RFC 9110 §8.8.3 a body the runtime's fetch decoded", () => {
  const origin = () =>
    new Headers({
      "content-encoding": "gzip",
      etag: '"gz-1"',
      "content-digest": "sha-256=:x:",
      "repr-digest": "sha-256=:x:",
      digest: "SHA-256=x",
      "content-md5": "x",
      "x-a": "1",
    });

  it("loses its label and the checksums of the coded bytes; its strong tag is weakened", () => {
    const { headers } = responseHeaders(origin(), () => true);
    expect(headers).toEqual([
      ["etag", 'W/"gz-1"'],
      ["x-a", "1"],
    ]);
  });

  it("an undecoded body keeps them all as sent", () => {
    const { headers } = responseHeaders(origin(), () => false);
    expect(headers).toHaveLength(7);
    expect(headers).toContainEqual(["etag", '"gz-1"']);
  });
});
