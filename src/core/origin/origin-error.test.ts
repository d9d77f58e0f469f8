import { describe, expect, it } from "vitest";
import { asOriginError } from "./origin-error.ts";

describe("asOriginError", () => {
  const url = "http://origin.test/p";
  const live = new AbortController().signal;
  const reset = new Error("Network connection lost.");

  it("a body that fails after a 4xx head is the origin refusing the request (a 431 on a head past its limit, then a reset), not an unwell origin", () => {
    const error = asOriginError(reset, live, url, 431);
    expect([error.code, error.message]).toEqual([
      "ORIGIN_STATUS",
      "origin refused http://origin.test/p with 431, then reset its answer",
    ]);
  });

  it("one that fails after a 2xx head is a truncated body, and one that fails before any head an unreachable origin", () => {
    expect(asOriginError(reset, live, url, 200).code).toBe("ORIGIN_TRUNCATED");
    expect(asOriginError(reset, live, url).code).toBe("ORIGIN_NETWORK");
  });
});
