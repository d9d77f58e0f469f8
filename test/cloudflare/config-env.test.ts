import { describe, expect, it } from "vitest";
import { configFromEnv } from "../../src/cloudflare/config-env.ts";

describe("configFromEnv", () => {
  it("builds a full config from ORIGIN_URL alone", () => {
    const config = configFromEnv({ ORIGIN_URL: "http://127.0.0.1:8080" });
    expect(config.origin.url).toBe("http://127.0.0.1:8080");
    expect(config.origin.maxConcurrency).toBe(8);
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
    expect(() => configFromEnv({ ORIGIN_URL: "", HERDLESS_CONFIG: '{"origin":{"url":"/var/www"}}' })).toThrow(
      "origin.url: origin.url must be an absolute http(s) URL",
    );
    expect(() =>
      configFromEnv({ ORIGIN_URL: "http://127.0.0.1:1", HERDLESS_CONFIG: '{"origin":{"timeoutMs":-1}}' }),
    ).toThrow("origin.timeoutMs: origin.timeoutMs must be at least 1 ms (got -1)");
  });
});
