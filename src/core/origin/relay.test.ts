import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { parseConfig } from "../config.ts";
import { HerdlessError } from "../errors.ts";
import type { EngineRequest } from "../http/respond.ts";
import { forwardPolicy } from "./forward.ts";
import type { GuardedCallDeps } from "./guarded-call.ts";
import { relay } from "./relay.ts";

const T0 = 1_700_000_000_000;

/** A relayed POST whose origin never answers, and a guard whose permit the test can take away. */
function relayWithLosablePermit() {
  const config = parseConfig({ origin: { url: "http://origin.test" } });
  let lose!: (reason: unknown) => void;
  const guard: GuardedCallDeps["guard"] = {
    acquire: async () => {
      const lost = new AbortController();
      lose = (reason) => lost.abort(reason);
      return { lost: lost.signal, release: () => undefined };
    },
    snapshot: async () => ({ breaker: "closed", inFlight: 0, queued: 0 }),
  };
  const fetchImpl: GuardedCallDeps["fetch"] = (_url, init) =>
    new Promise((_resolve, reject) => init?.signal?.addEventListener("abort", () => reject(init.signal?.reason)));
  const request: EngineRequest = {
    method: "POST",
    url: new URL("http://cache.test/orders"),
    headers: new Headers({ "content-length": "2" }),
    rawHeaders: [["content-length", "2"]],
    body: new TextEncoder().encode("{}"),
  };
  const answer = relay(
    {
      config,
      forward: forwardPolicy(config),
      originDeps: { config, clock: new ManualClock(T0), guard, fetch: fetchImpl },
    },
    request,
    {},
  );
  return { answer, lose: (reason: unknown) => lose(reason) };
}

describe("relay failures", () => {
  it("a relay whose origin permit is lost (the fleet's Redis or the guard object went away) is a 503 with Retry-After, told as coordinator-unavailable, as a fill's is", async () => {
    const { answer, lose } = relayWithLosablePermit();
    await Promise.resolve();
    await Promise.resolve();
    lose(new HerdlessError("COORDINATOR_UNAVAILABLE", "origin permit lost: redis is unreachable"));
    const response = await answer;
    expect(response.status).toBe(503);
    expect(response.headers).toContainEqual(["retry-after", "1"]);
    expect(response.cacheStatus.detail).toBe("coordinator-unavailable");
  });

  it("a relay the origin stalls on is a 504, anything else it does a 502, both origin-error", async () => {
    for (const [code, status] of [
      ["ORIGIN_TIMEOUT", 504],
      ["ORIGIN_STATUS", 502],
    ] as const) {
      const { answer, lose } = relayWithLosablePermit();
      await Promise.resolve();
      await Promise.resolve();
      lose(new HerdlessError(code, "test"));
      const response = await answer;
      expect(response.status).toBe(status);
      expect(response.cacheStatus.detail).toBe("origin-error");
    }
  });
});
