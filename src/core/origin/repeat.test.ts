import { describe, expect, it } from "vitest";
import { mayRepeat } from "./repeat.ts";

describe("mayRepeat: which lost origin requests may be asked again (RFC 9110 §9.2.2)", () => {
  it("idempotent methods without a body, not cancelled", () => {
    for (const method of ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]) expect(mayRepeat({ method })).toBe(true);
    expect(mayRepeat({})).toBe(true);
  });

  it("never a POST or PATCH, a request with a body, or a cancelled one", () => {
    expect(mayRepeat({ method: "POST" })).toBe(false);
    expect(mayRepeat({ method: "PATCH" })).toBe(false);
    expect(mayRepeat({ method: "PUT", body: "x" })).toBe(false);
    expect(mayRepeat({ method: "GET", signal: AbortSignal.abort() })).toBe(false);
  });
});
