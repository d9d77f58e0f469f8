import { describe, expect, it } from "vitest";
import { configFromEnv, type ConfigEnv } from "../../src/cloudflare/config-env.ts";
import { fillBudgetBytes } from "../../src/core/store/fill-budget.ts";

describe("configFromEnv", () => {
  it("builds a full config from ORIGIN_URL alone", () => {
    const config = configFromEnv({ ORIGIN_URL: "http://127.0.0.1:8080" });
    expect(config.origin.url).toBe("http://127.0.0.1:8080");
    expect(config.origin.maxConcurrency).toBe(8);
  });

  it("gives a Worker isolate a fill budget of 64 MiB of its 128 MB, not a quarter of cache.maxBytes, unless one is set", () => {
    const budget = (HERDLESS_CONFIG: string) =>
      fillBudgetBytes(configFromEnv({ ORIGIN_URL: "http://127.0.0.1:8080", HERDLESS_CONFIG }));
    expect(budget("")).toBe(64 * 2 ** 20);
    expect(budget('{"cache":{"maxBytes":1073741824}}')).toBe(64 * 2 ** 20);
    expect(budget('{"cache":{"fillBudgetBytes":16777216}}')).toBe(16 * 2 ** 20);
  });

  it("overlays HERDLESS_CONFIG, with ORIGIN_URL winning over origin.url", () => {
    const config = configFromEnv({
      ORIGIN_URL: "http://127.0.0.1:9000",
      HERDLESS_CONFIG: JSON.stringify({
        origin: { url: "http://elsewhere.test", maxConcurrency: 2 },
        cache: { name: "dc" },
      }),
    });
    expect(config.origin).toMatchObject({ url: "http://127.0.0.1:9000", maxConcurrency: 2 });
    expect(config.cache.name).toBe("dc");
  });

  it("names the variable when HERDLESS_CONFIG is not a JSON object", () => {
    expect(() => configFromEnv({ ORIGIN_URL: "http://127.0.0.1:1", HERDLESS_CONFIG: "{nope" })).toThrow(
      /HERDLESS_CONFIG must be a JSON object/,
    );
    expect(() => configFromEnv({ ORIGIN_URL: "http://127.0.0.1:1", HERDLESS_CONFIG: "[1]" })).toThrow(
      /HERDLESS_CONFIG must be a JSON object/,
    );
  });

  it("passes field errors through from the schema, naming ORIGIN_URL when that is what was wrong", () => {
    expect(() => configFromEnv({ ORIGIN_URL: "ftp://x", HERDLESS_CONFIG: "" })).toThrow(
      'ORIGIN_URL: ORIGIN_URL must be an absolute http(s) URL such as http://127.0.0.1:8080 (got "ftp://x")',
    );
    // `http://${HOST}/app?x` with HOST unset breaks two rules: both lines name ORIGIN_URL (the second said origin.url).
    expect(() => configFromEnv({ ORIGIN_URL: "http:///app?x", HERDLESS_CONFIG: "" })).toThrow(
      /^invalid herdless config:\n {2}- ORIGIN_URL: ORIGIN_URL must not have a query .*\n {2}- ORIGIN_URL: ORIGIN_URL must name the origin's host and port/,
    );
    expect(() => configFromEnv({ ORIGIN_URL: "", HERDLESS_CONFIG: '{"origin":{"url":"/var/www"}}' })).toThrow(
      "origin.url: origin.url must be an absolute http(s) URL",
    );
    expect(() =>
      configFromEnv({ ORIGIN_URL: "http://127.0.0.1:1", HERDLESS_CONFIG: '{"origin":{"timeoutMs":-1}}' }),
    ).toThrow("origin.timeoutMs: origin.timeoutMs must be at least 1 ms (got -1)");
  });

  it("takes HERDLESS_CONFIG written as a JSON object in wrangler vars (wrangler passes it as one), as its JSON text", () => {
    // Before: `TypeError: env.HERDLESS_CONFIG.trim is not a function`, a 500 for every visitor.
    const object = { origin: { maxConcurrency: 2 }, cache: { name: "object-var" } };
    const config = configFromEnv({ ORIGIN_URL: "http://127.0.0.1:9001", HERDLESS_CONFIG: object });
    expect(config).toEqual(
      configFromEnv({ ORIGIN_URL: "http://127.0.0.1:9001", HERDLESS_CONFIG: JSON.stringify(object) }),
    );
    expect(config.origin.maxConcurrency).toBe(2);
    // Another object is another config, not the one parsed before.
    const other = configFromEnv({ ORIGIN_URL: "http://127.0.0.1:9001", HERDLESS_CONFIG: { cache: { name: "other" } } });
    expect(other.cache.name).toBe("other");
    for (const value of [4, true, [1], null]) {
      expect(
        () => configFromEnv({ ORIGIN_URL: "http://127.0.0.1:1", HERDLESS_CONFIG: value } as unknown as ConfigEnv),
        String(value),
      ).toThrow(/HERDLESS_CONFIG must be a JSON object such as/);
    }
  });

  it("refuses an origin section that is not an object, as the Node CLI does, instead of running on the defaults", () => {
    for (const origin of ['"http://10.0.0.5:8080"', "null", "[]", "4"]) {
      expect(() =>
        configFromEnv({
          ORIGIN_URL: "http://127.0.0.1:1",
          HERDLESS_CONFIG: `{"origin":${origin},"cache":{"name":"x"}}`,
        }),
      ).toThrow(
        `HERDLESS_CONFIG: origin must be an object such as {"maxConcurrency":4} (the origin's URL goes in ORIGIN_URL or origin.url), got ${origin}`,
      );
    }
  });
});
