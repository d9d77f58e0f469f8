import { describe, expect, it } from "vitest";
import { clientInput } from "./client-inputs.ts";

describe("clientInput: what in a fill's request is its client's own", () => {
  it("a browser's, a crawler's and herdless's own headers are ordinary", () => {
    const browser: [string, string][] = [
      ["User-Agent", "Mozilla/5.0"],
      ["accept", "text/html"],
      ["accept-language", "en"],
      ["sec-fetch-mode", "navigate"],
      ["sec-ch-ua", '"Chromium";v="130"'],
      ["sec-gpc", "1"],
      ["upgrade-insecure-requests", "1"],
      ["referer", "https://site.test/"],
      ["accept-encoding", "br"],
      ["host", "site.test"],
      ["x-forwarded-for", "192.0.2.1"],
      ["x-forwarded-proto", "https"],
      ["via", "1.1 herdless"],
      ["surrogate-capability", 'herdless="Surrogate/1.0"'],
      ["cf-ray", "1-LHR"],
      ["cdn-loop", "cloudflare"],
      ["cf-ipcity", "London"],
      ["dpr", "2"],
      ["x-amzn-trace-id", "Root=1-67891233-abcdef012345678912345678"],
      ["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
      ["x-request-id", "f058ebd6-02f7-4d3f-942e-904344e8cde5"],
      ["from", "googlebot(at)googlebot.com"],
    ];
    expect(clientInput(browser)).toBeUndefined();
    expect(clientInput([])).toBeUndefined();
  });

  it("any other header, credentials on a route that caches them, and over 4 KiB of headers are the client's own", () => {
    expect(
      clientInput([
        ["accept", "*/*"],
        ["X-Debug", "1"],
      ]),
    ).toBe("the x-debug header");
    expect(clientInput([["cookie", "s=1"]])).toBe("the cookie header");
    expect(clientInput([["authorization", "Bearer x"]])).toBe("the authorization header");
    expect(clientInput([["user-agent", "u".repeat(4_100)]])).toBe("1 fields, 4114 bytes of headers");
    expect(clientInput([["user-agent", "u".repeat(4_000)]])).toBeUndefined();
    expect(clientInput([["accept-language", "caf\u00e9"]])).toBe("a value of accept-language outside visible ASCII");
  });

  it("a header the deployment lists in origin.ordinaryRequestHeaders is ordinary, in any case; its value must still be plain", () => {
    const listed = { origin: { ordinaryRequestHeaders: ["X-App-Version"] } };
    expect(clientInput([["x-app-version", "7"]], listed)).toBeUndefined();
    expect(clientInput([["X-APP-VERSION", "7"]], listed)).toBeUndefined();
    expect(
      clientInput(
        [
          ["x-app-version", "7"],
          ["x-debug", "1"],
        ],
        listed,
      ),
    ).toBe("the x-debug header");
    expect(clientInput([["x-app-version", "caf\u00e9"]], listed)).toBe(
      "a value of x-app-version outside visible ASCII",
    );
    expect(clientInput([["x-app-version", "7"]])).toBe("the x-app-version header");
  });
});
