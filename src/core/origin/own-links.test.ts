import { describe, expect, it } from "vitest";
import { ownLinksRewritten } from "./own-links.ts";

const at = (value: string, originUrl = "http://10.0.0.5:8080/app", name = "location") =>
  ownLinksRewritten([[name, value]], originUrl, "https://shop.test")[0]![1];

describe("ownLinksRewritten (nginx's proxy_redirect default)", () => {
  it("a URL on origin.url, under its path, names the same path, query and fragment at the client's scheme and host", () => {
    expect(at("http://10.0.0.5:8080/app/login?next=%2F#f")).toBe("https://shop.test/login?next=%2F#f");
    expect(at("HTTP://10.0.0.5:8080/app")).toBe("https://shop.test/");
    expect(at("http://10.0.0.5:8080/app?x=1")).toBe("https://shop.test/?x=1");
    expect(at("//10.0.0.5:8080/app/a")).toBe("https://shop.test/a");
    expect(at("http://10.0.0.5:8080/app/a b", undefined, "content-location")).toBe("https://shop.test/a b");
    expect(at("http://origin.test/a", "http://ORIGIN.test:80/")).toBe("https://shop.test/a");
  });

  it("a backslash reads as browsers read it: it ends the authority, and the origin's own URL so spelled is rewritten too", () => {
    // A browser follows `http://10.0.0.5:8080\@evil.test/` to 10.0.0.5, path /@evil.test/: so does the rewrite.
    expect(at("http://10.0.0.5:8080\\@evil.test/", "http://10.0.0.5:8080/")).toBe("https://shop.test/@evil.test/");
    expect(at("http:\\\\10.0.0.5:8080\\app\\a\\b")).toBe("https://shop.test/a\\b");
    expect(at("\\\\10.0.0.5:8080/app/a")).toBe("https://shop.test/a");
    // Another host, however spelled, is left as sent.
    for (const value of ["http://evil.test\\@10.0.0.5:8080/app/a", "\\\\evil.test/app/a"])
      expect(at(value), value).toBe(value);
  });

  it("relative references, other hosts, ports, schemes and paths outside origin.url's are left as sent", () => {
    for (const value of [
      "/app/login",
      "login",
      "http://10.0.0.5:8081/app/a",
      "https://10.0.0.5:8080/app/a",
      "http://elsewhere.test/app/a",
      "http://10.0.0.5:8080/application",
      "http://10.0.0.5:8080/",
      "http://[bad/app",
      "javascript://10.0.0.5:8080/app",
    ])
      expect(at(value), value).toBe(value);
    expect(
      ownLinksRewritten([["link", "<http://10.0.0.5:8080/app/a>"]], "http://10.0.0.5:8080/app", "https://s.test"),
    ).toEqual([["link", "<http://10.0.0.5:8080/app/a>"]]);
  });

  it("a Refresh whose url= names the origin is rewritten the same way, quoted or not; other Refresh values are left", () => {
    expect(at("0; url=http://10.0.0.5:8080/app/next", undefined, "refresh")).toBe("0; url=https://shop.test/next");
    expect(at("5;URL='http://10.0.0.5:8080/app/a?b=1'", undefined, "refresh")).toBe("5;URL='https://shop.test/a?b=1'");
    for (const value of ["5", "5; url=/app/next", "0; url=http://elsewhere.test/app/x", "url="])
      expect(at(value, undefined, "refresh"), value).toBe(value);
  });
});
