/**
 * An expired page whose copy stale-if-error covers, while every origin permit is taken: the
 * copy answers at once, in every data center, instead of after origin.queueTimeoutMs in the
 * guard object's queue.
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useGuard, useInCoordinators } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

describe("an expired page with a stale-if-error copy while the origin's permits are all taken (workerd)", () => {
  it("is answered from its copy at once, and renewed by the first request that finds a permit free", async () => {
    const clock = new ManualClock(Date.now());
    const origin = await testOrigin({ headers: { "cache-control": "max-age=10, stale-if-error=600" } });
    const testEnv = edgeEnv(origin.url, { origin: { maxConcurrency: 1, queueTimeoutMs: 10_000 } });
    const guardName = `busy-${crypto.randomUUID()}`;
    const [pop, slow] = ["/busy/pop", "/busy/slow"];
    await useGuard(testEnv, guardName, clock);
    await useInCoordinators(testEnv, [pop, slow], clock, guardName);
    const [dc0, dc1] = dataCenters(2, testEnv, clock, { ownIsolate: true });
    const before = await dc0!.get(pop);
    expect(before.status).toBe(200);
    clock.advance(11_000);
    // A slow cold page takes the one permit.
    await origin.set({ mode: "hold" });
    const held = dc0!.get(slow);
    await origin.waitFor({ held: 1 });
    // Both data centers: the one with the copy, and one without (the key's object hands its copy).
    for (const dc of [dc0!, dc1!]) {
      const started = performance.now();
      const answer = await dc.get(pop);
      expect(answer).toMatchObject({ status: 200, body: before.body });
      expect(answer.cacheStatus).toContain("fwd=stale");
      expect(answer.cacheStatus).toContain("detail=origin-busy");
      expect(performance.now() - started).toBeLessThan(5_000);
    }
    expect(await origin.count(pop)).toBe(1);
    await origin.set({ mode: "up" });
    await origin.release();
    expect((await held).status).toBe(200);
    const renewed = await dc0!.get(pop);
    expect(renewed.status).toBe(200);
    expect(renewed.body).not.toBe(before.body);
    expect(await origin.count(pop)).toBe(2);
  });
});
