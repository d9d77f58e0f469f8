/**
 * Refresh-ahead on Node, one process and a 2-process Redis fleet: steady requests on a hot
 * key whose origin sends only `max-age=2` (no stale-while-revalidate) are all hits after
 * warm-up, and the origin sees about one request per lifetime for the whole fleet.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
import { deploy, send as get, type Deployment } from "./deployment.ts";

const PRIMARY = `GET http://site.test/hot`;

/** Polls what background work makes true; bounded, never a fixed sleep. */
async function until(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

let origin: FragileOrigin | undefined;
let deployment: Deployment | undefined;

afterEach(async () => {
  await deployment?.close();
  await origin?.close();
  origin = undefined;
  deployment = undefined;
});

describe.each([
  ["one Node process", 1],
  ["a fleet of two processes on Redis", 2],
])("refresh-ahead: %s", (_, members) => {
  it("steady requests on a max-age=2 key without SWR: every answer after warm-up is a hit, origin requests ≤ 1.1 × one per lifetime", async () => {
    origin = await startFragileOrigin({ cacheControl: "max-age=2" });
    deployment = await deploy(
      members === 1 ? "node" : "fleet",
      origin.url,
      { defaults: { refreshAhead: 0.05 } },
      members,
    );
    const { clock, stacks, urls } = deployment;
    for (const url of urls) expect((await get(url, "/hot")).status).toBe(200);
    expect(origin.stats().requests).toBe(1);

    const waited: string[] = [];
    let renewing = 0;
    // 60 s of traffic, one request every 50 ms over the members: 30 lifetimes of the key.
    for (let i = 0; i < 1_200; i++) {
      clock.advance(50);
      const member = i % members;
      const answer = await get(urls[member]!, "/hot");
      if (answer.status !== 200 || !answer.cacheStatus.startsWith("herdless; hit; ")) waited.push(answer.cacheStatus);
      if (!answer.cacheStatus.endsWith("detail=refresh-ahead")) continue;
      renewing++;
      // The renewal runs behind the answer (real time); let it land before the clock moves on.
      await until("the renewed copy is in this member's near tier", () => {
        const held = stacks[member]!.near.getSync(PRIMARY);
        return held !== undefined && held.staleAt - clock.now() > 1_000;
      });
    }
    expect(waited).toEqual([]);
    expect(renewing).toBeGreaterThan(0);
    const renewals = origin.stats().requests - 1;
    expect(renewals).toBeGreaterThanOrEqual(29);
    expect(renewals).toBeLessThanOrEqual(33);
  });
});

describe("refresh-ahead on a fleet: a member that saw no request in the window", () => {
  it("serves the expiring copy while another member's renewal holds the key's lease (no wait, one origin request for the renewal), then keeps the renewed copy", async () => {
    origin = await startFragileOrigin({ cacheControl: "max-age=2" });
    deployment = await deploy("fleet", origin.url, { defaults: { refreshAhead: 0.05 } }, 2);
    const { clock, stacks, urls } = deployment;
    const [a, b] = urls as [string, string];
    for (const url of urls) expect((await get(url, "/hot")).status).toBe(200);
    expect(origin.stats().requests).toBe(1);

    // In the last 5 % of the lifetime a request reaches member a only: a renews, and the
    // origin takes its time over the renewal.
    origin.set({ latencyMs: 2_000 });
    clock.advance(1_950);
    expect((await get(a, "/hot")).cacheStatus).toMatch(/detail=refresh-ahead$/);
    await until("the renewal reaches the origin", () => origin!.stats().inFlight === 1);

    // The copy expires; member b never saw the window.
    clock.advance(100);
    const startedAt = performance.now();
    const answer = await get(b, "/hot");
    // A caller waiting on the lease would wait for the renewal (2 s).
    expect(performance.now() - startedAt).toBeLessThan(1_500);
    // The expired copy, as a member serves it while its own refresh-ahead renews it.
    expect(answer.status).toBe(200);
    expect(answer.cacheStatus).toMatch(/detail=stale-while-revalidate$/);

    // Once the renewal lands, b holds the renewed copy: its next answer is a hit, not another trip to the coordinator.
    await until("b keeps the renewed copy", () => (stacks[1]!.near.getSync(PRIMARY)?.staleAt ?? 0) > clock.now());
    expect((await get(b, "/hot")).cacheStatus).toMatch(/^herdless; hit/);
    expect(origin.stats().requests).toBe(2);
  });
});

describe("refresh-ahead on a fleet: a member that saw the window too", () => {
  it("follows the other member's renewal to its end (its refresh-ahead waits on the lease), and keeps the renewed copy", async () => {
    origin = await startFragileOrigin({ cacheControl: "max-age=2" });
    deployment = await deploy("fleet", origin.url, { defaults: { refreshAhead: 0.05 } }, 2);
    const { clock, stacks, urls } = deployment;
    const [a, b] = urls as [string, string];
    for (const url of urls) expect((await get(url, "/hot")).status).toBe(200);
    const expiresAt = stacks[1]!.near.getSync(PRIMARY)!.staleAt;

    // Both members see the window; a's renewal holds the lease at a slow origin.
    origin.set({ latencyMs: 1_000 });
    clock.advance(1_950);
    expect((await get(a, "/hot")).cacheStatus).toMatch(/detail=refresh-ahead$/);
    await until("a's renewal reaches the origin", () => origin!.stats().inFlight === 1);
    // b's own refresh-ahead finds a's lease: it must wait for that renewal, not take the copy
    // it came to renew (still fresh in Redis) as its answer. Taken, b's refresh ended at once,
    // and past expiry b had no renewal of its own to answer behind: its requests raced a's
    // lease in Redis (the bench's last fleet waits: requests that took the lease just after a
    // released it, reported collapsed).
    expect((await get(b, "/hot")).cacheStatus).toMatch(/detail=refresh-ahead$/);

    // Once the renewal lands, b holds the renewed copy without another request of its own …
    await until("b's refresh-ahead keeps the renewed copy", () => {
      const held = stacks[1]!.near.getSync(PRIMARY);
      return held !== undefined && held.staleAt > expiresAt;
    });
    // … and answers from it past the old copy's expiry.
    clock.advance(100);
    expect((await get(b, "/hot")).cacheStatus).toMatch(/^herdless; hit; ttl=\d+$/);
    expect(origin.stats().requests).toBe(2);
  });
});
