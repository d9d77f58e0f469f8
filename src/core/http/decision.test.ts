import { describe, expect, it } from "vitest";
import { parseConfig, routeFor } from "../config.ts";
import { decide, decideOnFailure, isUnsafeMethod, type RequestFacts } from "./decision.ts";
import { testEntry } from "../store/store-conformance.ts";

const config = parseConfig({
  origin: { url: "http://127.0.0.1:1" },
  routes: [
    { match: "/private/*", bypass: true },
    { match: "/api/*", cacheAuthorized: true },
  ],
});
const route = routeFor(config, "/");
const get: RequestFacts = { method: "GET", hasAuthorization: false, hasCookie: false };
// staleAt 10 s, swrUntil 20 s, sieUntil 30 s, deleteAt 60 s after 0.
const entry = testEntry("K", 0);

describe("decision table", () => {
  it.each([
    ["fresh before staleAt", 9_999, "fresh"],
    ["stale-while-revalidate from staleAt until swrUntil", 10_000, "stale-while-revalidate"],
    ["revalidate once past swrUntil", 20_000, "revalidate"],
  ])("%s", (_, now, kind) => {
    expect(decide(entry, "K", get, route, now).kind).toBe(kind);
  });

  it("misses when nothing is stored", () => {
    expect(decide(undefined, "K", get, route, 0)).toEqual({ kind: "miss", fwd: "uri-miss" });
  });

  it("RFC 9111 §4.1: never serves another variant", () => {
    expect(decide(testEntry("K|accept-language=fr", 0), "K|accept-language=de", get, route, 0)).toEqual({
      kind: "miss",
      fwd: "vary-miss",
    });
  });

  it("RFC 9111 §4.2.4: must-revalidate entries are never served stale, even inside swr", () => {
    expect(decide({ ...entry, mustRevalidate: true }, "K", get, route, 15_000).kind).toBe("revalidate");
  });

  it("HEAD is answered from the GET entry", () => {
    expect(decide(entry, "K", { ...get, method: "HEAD" }, route, 0).kind).toBe("fresh");
  });

  it.each(["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])("RFC 9111 §4: %s bypasses", (method) => {
    expect(decide(entry, "K", { ...get, method }, route, 0)).toEqual({ kind: "bypass", reason: "method" });
  });

  it("RFC 9111 §3.5: Authorization and Cookie requests bypass the stored copy unless the route allows", () => {
    expect(decide(entry, "K", { ...get, hasAuthorization: true }, route, 0)).toEqual({
      kind: "bypass",
      reason: "authorization",
    });
    expect(decide(entry, "K", { ...get, hasAuthorization: true, hasCookie: true }, route, 0)).toEqual({
      kind: "bypass",
      reason: "credentials",
    });
    expect(decide(entry, "K", { ...get, hasCookie: true }, route, 0)).toEqual({
      kind: "bypass",
      reason: "credentials",
    });
    expect(decide(entry, "K", { ...get, hasCookie: true }, routeFor(config, "/api/x"), 0).kind).toBe("fresh");
  });

  it("a Cookie request is answered from a fresh or revalidating copy marked public that does not vary on Cookie", () => {
    const cookie = { ...get, hasCookie: true };
    const copy = {
      ...entry,
      headers: [
        ["cache-control", "max-age=10"],
        ["cache-control", "Public"],
      ] as [string, string][],
    };
    expect(decide(copy, "K", cookie, route, 0).kind).toBe("fresh");
    expect(decide(copy, "K", cookie, route, 15_000).kind).toBe("stale-while-revalidate");
    const bypass = { kind: "bypass", reason: "credentials" };
    expect(decide(copy, "K", cookie, route, 20_000)).toEqual(bypass);
    expect(decide({ ...copy, mustRevalidate: true }, "K", cookie, route, 15_000)).toEqual(bypass);
    expect(decide({ ...copy, vary: ["accept-encoding", "cookie"] }, "K", cookie, route, 0)).toEqual(bypass);
    expect(decide(copy, "K|accept-language=de", cookie, route, 0)).toEqual(bypass);
    expect(decide(undefined, "K", cookie, route, 0)).toEqual(bypass);
    expect(decide(copy, "K", { ...cookie, hasAuthorization: true }, route, 0)).toEqual(bypass);
    expect(decide({ ...copy, headers: [["cache-control", "max-age=10, s-maxage=10"]] }, "K", cookie, route, 0)).toEqual(
      bypass,
    );
  });

  it("a bypass route never reads the cache", () => {
    expect(decide(entry, "K", get, routeFor(config, "/private/a"), 0)).toEqual({ kind: "bypass", reason: "route" });
  });

  it("RFC 9111 §4.4: unsafe methods are the ones that invalidate", () => {
    expect(["POST", "PUT", "DELETE", "PATCH"].every(isUnsafeMethod)).toBe(true);
    expect(["GET", "HEAD", "OPTIONS", "TRACE"].some(isUnsafeMethod)).toBe(false);
  });
});

describe("RFC 5861 §4 stale-if-error", () => {
  it("serves the stored copy inside the window", () => {
    expect(decideOnFailure(entry, "ORIGIN_STATUS", config, 29_999).kind).toBe("stale-if-error");
  });
  it("answers with the origin's error past the window", () => {
    expect(decideOnFailure(entry, "ORIGIN_STATUS", config, 30_000).kind).toBe("error");
    expect(decideOnFailure(entry, "ORIGIN_TRUNCATED", config, 30_000).kind).toBe("error");
  });
  it("RFC 9111 §4.2.4: serves past the window while the origin cannot be reached, when the operator allows", () => {
    expect(decideOnFailure(entry, "ORIGIN_TIMEOUT", config, 45_000).kind).toBe("stale-if-error");
    expect(decideOnFailure(entry, "ORIGIN_NETWORK", config, 45_000).kind).toBe("stale-if-error");
    expect(decideOnFailure(entry, "COORDINATOR_UNAVAILABLE", config, 45_000).kind).toBe("stale-if-error");
    const strict = parseConfig({ origin: { url: "http://127.0.0.1:1" }, breaker: { serveStaleWhileOpen: false } });
    expect(decideOnFailure(entry, "ORIGIN_NETWORK", strict, 45_000).kind).toBe("error");
  });
  it("serves past the window while the breaker refuses, when the operator allows", () => {
    expect(decideOnFailure(entry, "BREAKER_OPEN", config, 45_000).kind).toBe("stale-if-error");
    const strict = parseConfig({ origin: { url: "http://127.0.0.1:1" }, breaker: { serveStaleWhileOpen: false } });
    expect(decideOnFailure(entry, "BREAKER_OPEN", strict, 45_000).kind).toBe("error");
  });
  it("never serves must-revalidate or negative entries in place of an answer", () => {
    expect(decideOnFailure({ ...entry, mustRevalidate: true }, "ORIGIN_STATUS", config, 1).kind).toBe("error");
    expect(decideOnFailure({ ...entry, negative: true }, "ORIGIN_STATUS", config, 1).kind).toBe("error");
  });
  it("never serves an unconfirmed error (an attacker's 500 on a cold key) in place of another request's answer", () => {
    const unconfirmed = { ...entry, status: 500, askedBy: "00112233445566778899aabbccddeeff" };
    expect(decideOnFailure(unconfirmed, "ORIGIN_STATUS", config, 1).kind).toBe("error");
    expect(decideOnFailure(unconfirmed, "ORIGIN_NETWORK", config, 45_000).kind).toBe("error");
  });
  it("has nothing to serve without an entry", () => {
    expect(decideOnFailure(undefined, "ORIGIN_NETWORK", config, 0).kind).toBe("error");
  });
});
