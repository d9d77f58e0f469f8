import { describe, expect, it } from "vitest";
import { fieldsDigest, servesFields } from "./asked-by.ts";

const browser: [string, string][] = [
  ["user-agent", "Mozilla/5.0 Chrome/131.0"],
  ["accept", "text/html"],
  ["accept-language", "en-US,en;q=0.9"],
  ["host", "a.test"],
  ["x-forwarded-for", "192.0.2.1"],
];

describe("an unconfirmed error answers only a request like its own", () => {
  it("tells requests apart by their ordinary fields' values, not by their order", async () => {
    const digest = await fieldsDigest(browser);
    expect(await fieldsDigest([...browser].reverse())).toBe(digest);
    const attacker = browser.map(([n, v]): [string, string] => [n, n === "accept-language" ? "xx" : v]);
    expect(await fieldsDigest(attacker)).not.toBe(digest);
    expect(await fieldsDigest([...browser, ["referer", `https://x.test/${"a".repeat(3_000)}`]])).not.toBe(digest);
  });

  it("reads a client's own input by its name alone, and a request id not at all: the conformance suite's Req-Num and a load balancer's trace id change on every request", async () => {
    const suite = (n: number): [string, string][] => [...browser, ["test-id", "status-500-fresh"], ["req-num", `${n}`]];
    expect(await fieldsDigest(suite(2))).toBe(await fieldsDigest(suite(1)));
    const traced = (id: string): [string, string][] => [
      ...browser,
      ["traceparent", id],
      ["cf-ray", id],
      ["x-request-id", id],
    ];
    expect(await fieldsDigest(traced("b"))).toBe(await fieldsDigest(traced("a")));
    expect(await fieldsDigest([...browser, ["x-debug", "1"]])).not.toBe(await fieldsDigest(browser));
    // A route that caches credentials: one client's token is not another's.
    expect(await fieldsDigest([...browser, ["authorization", "Bearer a"]])).not.toBe(
      await fieldsDigest([...browser, ["authorization", "Bearer b"]]),
    );
  });

  it("serves a confirmed entry (one stored before the mark existed too) to everyone", async () => {
    expect(await servesFields({}, browser)).toBe(true);
    expect(await servesFields({ askedBy: await fieldsDigest(browser) }, browser)).toBe(true);
    expect(await servesFields({ askedBy: await fieldsDigest(browser) }, [...browser, ["dnt", "1"]])).toBe(false);
  });
});
