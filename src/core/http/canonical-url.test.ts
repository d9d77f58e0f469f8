import { describe, expect, it } from "vitest";
import { canonicalUrl } from "./canonical-url.ts";

const canonical = (url: string) => canonicalUrl(new URL(url)).href;

describe("canonicalUrl", () => {
  it("decodes escaped unreserved characters and uppercases the other escapes in the path", () => {
    expect(canonical("http://a.test/%70age/caf%c3%a9")).toBe("http://a.test/page/caf%C3%A9");
    expect(canonical("http://a.test/%7e%5f%2d%41%39")).toBe("http://a.test/~_-A9");
    // Reserved characters keep their escape: `%2F` is no segment break, `%3F` no query.
    expect(canonical("http://a.test/a%2fb%3f%20")).toBe("http://a.test/a%2Fb%3F%20");
  });

  it("leaves an escaped dot escaped: no new dot segment", () => {
    expect(canonical("http://a.test/a/.%2e%2E./b/x%2ey")).toBe("http://a.test/a/.%2E%2E./b/x%2Ey");
  });

  it("drops a host name's trailing dots, never the whole host, and leaves the query as sent", () => {
    expect(canonical("http://Shop.Test.:8080/p?q=%70")).toBe("http://shop.test:8080/p?q=%70");
    expect(canonical("http://shop.test../p")).toBe("http://shop.test/p");
    expect(canonical("http://127.0.0.1./p")).toBe("http://127.0.0.1/p");
  });

  it("an attacker's Host of 100,000 dots is read in one pass, not retried from every dot", () => {
    // The pattern it replaced took seconds here (quadratic), past the test's timeout.
    const dots = ".".repeat(100_000);
    expect(canonical(`http://${dots}a./p`)).toBe(`http://${dots}a/p`);
  });

  it("keeps a path that starts with // a path", () => {
    expect(canonical("http://a.test//%65vil.test/p")).toBe("http://a.test//evil.test/p");
  });
});
