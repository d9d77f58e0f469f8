import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { dataCenter, edgeEnv, useGuardConfig, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

describe("a background refresh that finds the page no longer shareable (Worker)", () => {
  it("the data center's copy stops answering once the origin says private", async () => {
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=1, stale-while-revalidate=60" },
      body: "shared-v1",
    });
    const testEnv = edgeEnv(origin.url, {});
    const clock = new ManualClock(Date.now());
    const guardName = `guard-${crypto.randomUUID()}`;
    await useGuardConfig(testEnv, guardName);
    await useInCoordinators(testEnv, ["/p"], clock, guardName);
    const dc = dataCenter(`dc-${crypto.randomUUID()}`, testEnv, clock, { ownIsolate: true });
    expect((await dc.get("/p")).body).toBe("shared-v1");
    clock.advance(2_000);
    await origin.set({ headers: { "cache-control": "private, max-age=60" }, body: "personal" });
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const a = await dc.get("/p");
      await a.settled;
      seen.push(`${a.cacheStatus} ${a.body}`);
    }
    expect(seen.slice(1).every((s) => !s.endsWith("shared-v1"))).toBe(true);
  });
});
