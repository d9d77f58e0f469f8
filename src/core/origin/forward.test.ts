import { describe, expect, it } from "vitest";
import { parseConfig } from "../config.ts";
import { headerList } from "../http/http.ts";
import { loopEntry, loopsBack } from "./hops.ts";
import {
  forwardPolicy,
  originRequestHeaders,
  selectingHeaders,
  selectingView,
  type ForwardContext,
} from "./forward.ts";
import { DEFAULT_STRIPPED_REQUEST_HEADERS } from "./poisoning-headers.ts";

const policy = (origin: Record<string, unknown> = {}) =>
  forwardPolicy(parseConfig({ origin: { url: "http://127.0.0.1:1", ...origin } }));
const url = new URL("https://shop.example/p?a=1");
const fill: ForwardContext = { kind: "fill", credentials: false, url, clientAddress: "203.0.113.7", body: false };
const relay: ForwardContext = { ...fill, kind: "relay", credentials: true, body: true };
const names = (headers: [string, string][]) => headers.map(([name]) => name);
const value = (headers: [string, string][], name: string) => headers.find(([n]) => n === name)?.[1];

describe("what reaches the origin (RFC 9110 §7.6)", () => {
  it("forwards the client's end-to-end headers unchanged and in order", () => {
    const out = originRequestHeaders(
      [
        ["Accept", "application/json"],
        ["x-api-version", "3"],
        ["x-requested-with", "XMLHttpRequest"],
        ["origin", "https://app.example"],
        ["x-api-version", "4"],
      ],
      policy(),
      fill,
    );
    expect(out.slice(0, 5)).toEqual([
      ["accept", "application/json"],
      ["x-api-version", "3"],
      ["x-requested-with", "XMLHttpRequest"],
      ["origin", "https://app.example"],
      ["x-api-version", "4"],
    ]);
  });

  it("selectingView reads every header as the fill's list has it (its shortcuts included)", () => {
    const raw: [string, string][] = [
      ["accept-language", "fr"],
      ["accept-language", "de"],
      ["accept-encoding", "gzip, br"],
      ["connection", "keep-alive, x-hop, accept-encoding"],
      ["x-hop", "1"],
      ["x-forwarded-host", "evil"],
      ["x_forwarded_host", "evil"],
      ["via", "1.0 cdn"],
      ["x-forwarded-proto", "http"],
      ["cookie", "a=1"],
      ["range", "bytes=0-1"],
      ["proxy-x", "1"],
      ["content-type", "application/json"],
      ["x-api", "v2"],
    ];
    for (const credentials of [false, true]) {
      const context = { credentials, url, clientAddress: "203.0.113.7" };
      const full = headerList(selectingHeaders(raw, policy(), context));
      const view = selectingView(raw, policy(), context);
      for (const name of [...raw.map(([n]) => n), "host", "x-forwarded-for", "surrogate-capability", "absent"])
        expect(view.get(name), name).toBe(full.get(name));
    }
  });

  it("drops the underscore spellings of headers herdless governs (a CGI origin reads them as the real ones), and only those", () => {
    const out = originRequestHeaders(
      [
        ["X_Forwarded_Host", "evil.test"],
        ["x_forwarded_for", "6.6.6.6"],
        ["If_Modified_Since", "Mon, 01 Jan 2024 00:00:00 GMT"],
        ["Content_Length", "5"],
        ["Accept_Encoding", "gzip"],
        ["Proxy_Authorization", "Basic x"],
        ["Transfer_Encoding", "chunked"],
        ["x_my_strip", "1"],
        ["api_key", "k"],
        ["x_request_id", "r1"],
        ["User-Agent", "iphone"],
        ["User_Agent", "desktop"],
      ],
      policy({ stripRequestHeaders: [...DEFAULT_STRIPPED_REQUEST_HEADERS, "X-My-Strip"] }),
      relay,
    );
    expect(out.filter(([name]) => name.includes("_"))).toEqual([
      ["api_key", "k"],
      ["x_request_id", "r1"],
    ]);
  });

  it("a shared fill carries no header spelled with an underscore: alone it still reaches a CGI origin as the dashed one, unkeyed", () => {
    const raw: [string, string][] = [
      ["accept_language", "xx"],
      ["api_key", "k"],
      ["accept", "text/html"],
    ];
    expect(originRequestHeaders(raw, policy(), fill).filter(([name]) => name.includes("_"))).toEqual([]);
    expect(value(originRequestHeaders(raw, policy(), fill), "accept")).toBe("text/html");
  });

  it("drops hop-by-hop headers, those Connection lists, Expect, TE, Upgrade and Proxy-*", () => {
    const out = originRequestHeaders(
      [
        ["connection", "keep-alive, X-Secret-Hop"],
        ["keep-alive", "timeout=5"],
        ["x-secret-hop", "1"],
        ["expect", "100-continue"],
        ["te", "trailers"],
        ["upgrade", "h2c"],
        ["proxy-authorization", "Basic eA=="],
        ["proxy-foo", "1"],
        ["transfer-encoding", "chunked"],
        ["host", "shop.example"],
        ["accept", "*/*"],
      ],
      policy(),
      relay,
    );
    expect(names(out)).toEqual([
      "accept",
      "accept-encoding",
      "cdn-loop",
      "x-forwarded-for",
      "x-forwarded-proto",
      "via",
      "surrogate-capability",
    ]);
  });

  it("strips the override headers used for cache poisoning, and the operator can change the list", () => {
    const raw: [string, string][] = [
      ["X-Forwarded-Host", "evil.example"],
      ["x-original-url", "/admin"],
      ["x-http-method-override", "DELETE"],
      ["forwarded", "host=evil.example"],
      ["x-custom", "1"],
    ];
    expect(names(originRequestHeaders(raw, policy(), fill))).not.toContain("x-forwarded-host");
    expect(
      names(originRequestHeaders(raw, policy(), fill)).filter((n) => n.startsWith("x-") && n !== "x-forwarded-for"),
    ).toEqual(["x-custom", "x-forwarded-proto"]);
    const custom = policy({ stripRequestHeaders: ["X-Custom"] });
    expect(names(originRequestHeaders(raw, custom, fill))).toEqual([
      "x-forwarded-host",
      "x-original-url",
      "x-http-method-override",
      "forwarded",
      "accept-encoding",
      "cdn-loop",
      "x-forwarded-for",
      "x-forwarded-proto",
      "via",
      "surrogate-capability",
    ]);
  });

  it("sends credentials on a shared fill only when the route caches them; always on a relay", () => {
    const raw: [string, string][] = [
      ["authorization", "Bearer t"],
      ["cookie", "s=1"],
    ];
    expect(names(originRequestHeaders(raw, policy(), fill))).not.toContain("authorization");
    expect(names(originRequestHeaders(raw, policy(), fill))).not.toContain("cookie");
    expect(names(originRequestHeaders(raw, policy(), { ...fill, credentials: true }))).toContain("cookie");
    expect(names(originRequestHeaders(raw, policy(), relay))).toContain("authorization");
  });

  it("sends several Cookie fields as one, joined with '; ', where the first stood (RFC 6265 §5.4)", () => {
    const raw: [string, string][] = [
      ["cookie", "sessionid=alice"],
      ["accept", "text/html"],
      ["cookie", "csrftoken=t0k"],
    ];
    const out = originRequestHeaders(raw, policy(), relay);
    expect(out.filter(([name]) => name === "cookie")).toEqual([["cookie", "sessionid=alice; csrftoken=t0k"]]);
    expect(names(out).slice(0, 2)).toEqual(["cookie", "accept"]);
    // A variant keyed by Cookie (a route that caches it) is the one the origin was sent.
    const view = selectingView(raw, policy(), { credentials: true, url });
    expect(view.get("cookie")).toBe("sessionid=alice; csrftoken=t0k");
  });

  it("keeps a shared fill unconditional and whole: no client validators, Range or delta encoding (A-IM)", () => {
    const raw: [string, string][] = [
      ["if-none-match", '"x"'],
      ["if-modified-since", "Mon, 01 Jan 2024 00:00:00 GMT"],
      ["range", "bytes=0-1"],
      ["if-range", '"x"'],
      ["a-im", "vcdiff"],
    ];
    expect(names(originRequestHeaders(raw, policy(), fill))).toEqual([
      "accept-encoding",
      "cdn-loop",
      "x-forwarded-for",
      "x-forwarded-proto",
      "via",
      "surrogate-capability",
    ]);
    expect(names(originRequestHeaders(raw, policy(), relay))).toContain("if-none-match");
  });

  it("RFC 9110 §8.6: sends Content-Length only with the body it frames: never on a fill, nor on a relay without a body", () => {
    const raw: [string, string][] = [["content-length", "9"]];
    expect(value(originRequestHeaders(raw, policy(), relay), "content-length")).toBe("9");
    expect(value(originRequestHeaders(raw, policy(), { ...relay, body: false }), "content-length")).toBeUndefined();
    expect(value(originRequestHeaders(raw, policy(), fill), "content-length")).toBeUndefined();
  });

  it("RFC 9110 §8: a shared fill, which sends no body, sends nothing that describes one; a relay keeps it, body or not", () => {
    const raw: [string, string][] = [
      ["content-type", "multipart/form-data; boundary=x"],
      ["Content-Encoding", "gzip"],
      ["content-language", "fr"],
      ["content-location", "/x"],
      ["content-range", "bytes 0-1/2"],
      ["content-md5", "x"],
      ["digest", "sha-256=x"],
      ["content-digest", "sha-256=:x:"],
      ["repr-digest", "sha-256=:x:"],
      ["accept", "text/html"],
    ];
    expect(
      names(originRequestHeaders(raw, policy(), fill)).filter((n) => n.startsWith("content") || n.endsWith("digest")),
    ).toEqual([]);
    expect(value(originRequestHeaders(raw, policy(), fill), "accept")).toBe("text/html");
    for (const context of [relay, { ...relay, body: false }])
      expect(names(originRequestHeaders(raw, policy(), context)).slice(0, raw.length)).toEqual(
        raw.map(([n]) => n.toLowerCase()),
      );
  });

  it("RFC 8586: adds its CDN-Loop entry after the client's, on every origin request; only its own entry is a loop", () => {
    const entry = loopEntry("http://127.0.0.1:1");
    expect(entry).toMatch(/^herdless; o=[0-9a-f]{8}$/);
    expect(loopEntry("http://127.0.0.1:2")).not.toBe(entry);
    for (const context of [fill, relay]) {
      const out = originRequestHeaders([["CDN-Loop", "cloudflare"]], policy(), context);
      expect(value(out, "cdn-loop")).toBe(`cloudflare, ${entry}`);
    }
    const header = (v: string) => ({ get: (name: string) => (name === "cdn-loop" ? v : null) });
    expect(loopsBack(header(`cloudflare, ${entry}`), policy().loopEntry)).toBe(true);
    // Another herdless in front (another origin URL) or a CDN is no loop.
    expect(loopsBack(header(`${loopEntry("http://10.0.0.1")}, cloudflare`), entry)).toBe(false);
    expect(loopsBack({ get: () => null }, entry)).toBe(false);
  });

  it("adds X-Forwarded-For, X-Forwarded-Proto and Via; the client's X-Forwarded-Proto is replaced", () => {
    const relayed = originRequestHeaders([["x-forwarded-for", "198.51.100.1"]], policy(), relay);
    expect(value(relayed, "x-forwarded-for")).toBe("198.51.100.1, 203.0.113.7");
    const out = originRequestHeaders(
      [
        ["x-forwarded-for", "198.51.100.1"],
        ["x-forwarded-proto", "http"],
        ["via", "1.1 cdn"],
      ],
      policy(),
      fill,
    );
    // A fill's answer is everyone's: the client's claimed chain is not sent, its address is.
    expect(value(out, "x-forwarded-for")).toBe("203.0.113.7");
    expect(value(out, "x-forwarded-proto")).toBe("https");
    expect(value(out, "via")).toBe("1.1 cdn, 1.1 herdless");
    const quiet = originRequestHeaders([["via", "1.1 cdn"]], policy({ forwardedHeaders: false }), fill);
    expect(quiet).toEqual([
      ["via", "1.1 cdn"],
      ["accept-encoding", "identity"],
      ["cdn-loop", loopEntry("http://127.0.0.1:1")],
    ]);
    // Without them herdless trusts the proxy in front (docs/configuration.md): what it wrote
    // passes on as it is, on a fill too.
    const behindProxy: [string, string][] = [
      ["x-forwarded-for", "198.51.100.1"],
      ["x-forwarded-proto", "https"],
    ];
    expect(originRequestHeaders(behindProxy, policy({ forwardedHeaders: false }), fill)).toEqual(
      expect.arrayContaining(behindProxy),
    );
    // …but X-Forwarded-Proto only as the scheme the page is keyed by (the URL's), once: a
    // forged or second value, or one spelled otherwise, never reaches the origin.
    const forged: [string, string][] = [
      ["x-forwarded-proto", "HTTP, https"],
      ["accept", "*/*"],
      ["x-forwarded-proto", "http"],
    ];
    const told = originRequestHeaders(forged, policy({ forwardedHeaders: false }), fill);
    expect(told.filter(([name]) => name === "x-forwarded-proto")).toEqual([["x-forwarded-proto", "https"]]);
  });

  it("W3C Edge Architecture §2.2: announces herdless's device token in Surrogate-Capability, after a downstream surrogate's on one client's relay, alone on a shared fill", () => {
    const claimed: [string, string][] = [["surrogate-capability", 'cdn="Surrogate/1.0 ESI/1.0"']];
    expect(value(originRequestHeaders(claimed, policy(), fill), "surrogate-capability")).toBe(
      'herdless="Surrogate/1.0"',
    );
    const relayed = originRequestHeaders(claimed, policy(), { ...fill, kind: "relay" });
    expect(value(relayed, "surrogate-capability")).toBe('cdn="Surrogate/1.0 ESI/1.0", herdless="Surrogate/1.0"');
    const quiet = originRequestHeaders(claimed, policy({ forwardedHeaders: false }), fill);
    expect(value(quiet, "surrogate-capability")).toBeUndefined();
  });

  it("forwards a normalized Accept-Encoding (RFC 9110 §12.5.3)", () => {
    const out = originRequestHeaders([["accept-encoding", "gzip, deflate, br, zstd"]], policy(), fill);
    expect(value(out, "accept-encoding")).toBe("br, gzip");
    expect(value(originRequestHeaders([], policy(), fill), "accept-encoding")).toBe("identity");
  });

  it("sends the Host origin.hostHeader asks for", () => {
    expect(value(originRequestHeaders([["host", "evil"]], policy(), fill), "host")).toBeUndefined();
    expect(value(originRequestHeaders([["host", "x"]], policy({ hostHeader: "client" }), fill), "host")).toBe(
      "shop.example",
    );
    expect(value(originRequestHeaders([], policy({ hostHeader: "www.example.com" }), fill), "host")).toBe(
      "www.example.com",
    );
    expect(() => policy({ hostHeader: "a b" })).toThrow(/origin.hostHeader must be/);
  });
});
