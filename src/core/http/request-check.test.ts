import { describe, expect, it } from "vitest";
import {
  headRefusal,
  missingHostRefusal,
  transferCodingRefusal,
  forwardedScheme,
  hostRefusal,
  targetLengthRefusal,
  targetRefusal,
  targetUrl,
} from "./request-check.ts";

describe("hostRefusal", () => {
  it("refuses a bad Host however many good ones were seen before (valid hosts are remembered, bad ones never)", () => {
    for (let i = 0; i < 600; i++) expect(hostRefusal([`site${i}.example:8080`])).toBeUndefined();
    for (const bad of ["a b", "x|y", "user@host", "[::1", "shop.example:99999999"]) {
      expect(hostRefusal([bad])?.status).toBe(400);
      expect(hostRefusal([bad])?.status).toBe(400);
    }
    expect(hostRefusal(["site1.example:8080"])).toBeUndefined();
    expect(hostRefusal(["[::1]:8080"])).toBeUndefined();
  });

  it("refuses two Host fields even when each is valid and known", () => {
    expect(hostRefusal(["shop.example"])).toBeUndefined();
    expect(hostRefusal(["shop.example", "shop.example"])?.status).toBe(400);
  });
});

describe("headRefusal: a field value's characters (RFC 9110 §5.5)", () => {
  it("refuses a control character in any field value, as Node's parser does; HTAB, SP and obs-text are valid", () => {
    for (const bad of ["a\x01b", "a\x07", "\x1bx", "a\x7fb", "a\x00b", "a\nb"]) {
      const refusal = headRefusal("https://shop.test/p", [
        ["accept", "text/html"],
        ["x-a", bad],
      ]);
      expect(refusal?.status, JSON.stringify(bad)).toBe(400);
      expect(new TextDecoder().decode(refusal?.body as Uint8Array)).toContain('"x-a" header value');
    }
    expect(headRefusal("https://shop.test/p", [["x-a", "a\tb c~caf\xe9"]])).toBeUndefined();
  });
});

describe("targetUrl (RFC 9112 §3.2)", () => {
  it("an origin-form target is a path on the Host, even when it starts with //", () => {
    expect(targetUrl("//evil.example/p?q=1", "shop.example")?.href).toBe("http://shop.example//evil.example/p?q=1");
    expect(targetUrl("/a/../b", "shop.example")?.pathname).toBe("/b");
  });

  it("an absolute-form target keeps its own authority when it is an http(s) URL with a valid host and no userinfo", () => {
    expect(targetUrl("https://other.example/p", "shop.example")?.host).toBe("other.example");
    for (const bad of [
      "http://[zz]/x",
      "http://u:p@shop.example/",
      "http://@shop.example/",
      "http:///shop.example/p",
      "HTTPS:////shop.example/p",
      "file:///etc/passwd",
      "javascript:alert(1)",
      "*",
      "shop.example:443",
    ])
      expect(targetUrl(bad, "shop.example"), bad).toBeUndefined();
    expect(targetRefusal("http://[zz]/x", "shop.example")?.status).toBe(400);
    expect(targetRefusal("/fine", "shop.example")).toBeUndefined();
  });
});

describe("forwardedScheme", () => {
  it("reads the first entry of X-Forwarded-Proto, http or https in any case; anything else names no scheme", () => {
    expect(forwardedScheme("https")).toBe("https:");
    expect(forwardedScheme(" HTTPS , http")).toBe("https:");
    expect(forwardedScheme("http, https")).toBe("http:");
    for (const value of [undefined, null, "", ",https", "ftp", "https:", "javascript", "wss"])
      expect(forwardedScheme(value), String(value)).toBeUndefined();
  });

  it("an origin-form target takes the scheme it is given; an absolute-form one keeps its own", () => {
    expect(targetUrl("/p?q", "shop.test", "https:")?.href).toBe("https://shop.test/p?q");
    expect(targetUrl("http://shop.test/p", "shop.test", "https:")?.href).toBe("http://shop.test/p");
  });
});

describe("targetLengthRefusal (RFC 9110 §15.5.15)", () => {
  it("counts the path and query of the absolute URL, not its scheme and host: 414 past 16 KiB", () => {
    const path = `/${"p".repeat(16 * 1024 - 1)}`;
    expect(targetLengthRefusal(`https://${"h".repeat(200)}.test${path}`)).toBeUndefined();
    expect(targetLengthRefusal(`https://shop.test${path}?`)?.status).toBe(414);
    expect(targetLengthRefusal("https://shop.test")).toBeUndefined();
  });
});

describe("headRefusal: the head's size (RFC 6585 §5)", () => {
  it("counts the request-target and each field as HTTP/1.1 writes it: 431 past 16 KiB, naming the bytes", () => {
    // "x-a: " and its line end are 7 bytes; the target "/p" 2.
    const within = [["x-a", "a".repeat(16 * 1024 - 9)]] as [string, string][];
    expect(headRefusal("https://shop.test/p", within)).toBeUndefined();
    const over = headRefusal("https://shop.test/p?", within);
    expect([over?.status, over?.cacheStatus.detail]).toEqual([431, "refused"]);
    const many = Array.from({ length: 3_000 }, (_, i): [string, string] => [`x-${i}`, "v"]);
    expect(headRefusal("https://shop.test/", many)?.status).toBe(431);
  });

  it("gives the 400 of a control character before the 414 of a long target and the 431 of a large head", () => {
    const big: [string, string][] = [
      ["x-big", "a".repeat(20_000)],
      ["x-bad", "a\x01b"],
    ];
    expect(headRefusal(`https://shop.test/${"p".repeat(20_000)}`, big)?.status).toBe(400);
    expect(headRefusal(`https://shop.test/${"p".repeat(20_000)}`, big.slice(0, 1))?.status).toBe(414);
  });
});

describe("missingHostRefusal (RFC 9112 §3.2)", () => {
  it("refuses an HTTP/1.1 request without Host, never an HTTP/1.0 one or one with Host", () => {
    expect(missingHostRefusal(0, 1)?.status).toBe(400);
    expect(missingHostRefusal(0, 0)).toBeUndefined();
    expect(missingHostRefusal(1, 1)).toBeUndefined();
  });
});

describe("transferCodingRefusal (RFC 9112 §6.1)", () => {
  it("refuses chunked in another coding too, leaves chunked alone and no-length framing to the parser", () => {
    for (const te of ["gzip, chunked", "GZIP , Chunked", "deflate,chunked"])
      expect(transferCodingRefusal(te)?.status, te).toBe(501);
    for (const te of [undefined, "chunked", " Chunked ", "gzip", "chunked, gzip"])
      expect(transferCodingRefusal(te), te).toBeUndefined();
  });
});
