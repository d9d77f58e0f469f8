import { describe, expect, it } from "vitest";
import { HerdlessError } from "../errors.ts";
import { unsentBodyFailure, withoutAddresses } from "./failure-answer.ts";

const header = (headers: [string, string][], name: string) => headers.find(([n]) => n === name)?.[1];

describe("unsentBodyFailure: a relayed body that failed before any of it was sent", () => {
  it("an origin that stalled is a 504, any other origin fault a 502, both told as origin-error", () => {
    const stalled = unsentBodyFailure(new HerdlessError("ORIGIN_TIMEOUT", "no bytes for 5000 ms"), { fwd: "miss" });
    expect(stalled.status).toBe(504);
    expect(header(stalled.headers, "cache-status")).toContain("detail=origin-error");
    const cut = unsentBodyFailure(new HerdlessError("ORIGIN_TRUNCATED", "body ended at 10 of 20 bytes"), {});
    expect(cut.status).toBe(502);
    expect(header(cut.headers, "retry-after")).toBeUndefined();
    expect(unsentBodyFailure(new Error("socket hang up"), {}).status).toBe(502);
  });

  it("the fleet's Redis gone mid-relay is a 503 with Retry-After, as the same failure before the relay is", () => {
    const lost = unsentBodyFailure(new HerdlessError("COORDINATOR_UNAVAILABLE", "redis unreachable"), {});
    expect(lost.status).toBe(503);
    expect(header(lost.headers, "retry-after")).toBe("1");
    expect(header(lost.headers, "cache-status")).toContain("detail=coordinator-unavailable");
  });
});

describe("withoutAddresses: a failure as any client may read it", () => {
  it("keeps the fault and the path, drops the origin's scheme, credentials, host and port, and the address a connection failed at", () => {
    expect(withoutAddresses("origin answered http://user:pw@10.0.0.5:8080/app/p?x=1 with status 600")).toBe(
      "origin answered /app/p?x=1 with status 600",
    );
    expect(
      withoutAddresses(
        "origin unreachable for https://db.internal/p: fetch failed (connect ECONNREFUSED 10.0.0.5:443)",
      ),
    ).toBe("origin unreachable for /p: fetch failed (connect ECONNREFUSED)");
    expect(
      withoutAddresses("origin unreachable for http://[fd00::5]:81/p: getaddrinfo ENOTFOUND origin.internal"),
    ).toBe("origin unreachable for /p: getaddrinfo ENOTFOUND");
    expect(withoutAddresses("origin sent 2 of 10 declared bytes")).toBe("origin sent 2 of 10 declared bytes");
  });
});
