import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { parseConfig } from "../config.ts";
import { isHerdlessError } from "../errors.ts";
import { GuardFront } from "./guard-front.ts";
import { LocalGuard } from "./local-guard.ts";
import type { GuardSnapshot, OriginGuard, OriginPermit, Priority } from "./origin-guard.ts";

const T0 = 1_700_000_000_000;

/** The shared guard (the Worker's guard object), counting every call that reaches it. */
class CountingGuard implements OriginGuard {
  calls = 0;
  waiting = 0;
  peakWaiting = 0;
  constructor(private readonly inner: OriginGuard) {}
  async acquire(priority: Priority, signal?: AbortSignal): Promise<OriginPermit> {
    this.calls++;
    this.waiting++;
    this.peakWaiting = Math.max(this.peakWaiting, this.waiting);
    try {
      return await this.inner.acquire(priority, signal);
    } finally {
      this.waiting--;
    }
  }
  snapshot(): Promise<GuardSnapshot> {
    return this.inner.snapshot();
  }
}

function setup(origin: { maxConcurrency: number; maxQueue: number }, probeIntervalMs = 5_000) {
  const clock = new ManualClock(T0);
  const config = parseConfig({
    origin: { url: "http://origin.test", ...origin },
    breaker: { failureThreshold: 2, minFailingKeys: 1, probeIntervalMs },
  });
  const shared = new CountingGuard(new LocalGuard({ config, clock }));
  const gate = new GuardFront({
    clock,
    maxWaiting: origin.maxConcurrency + origin.maxQueue,
    probeIntervalMs: config.breaker.probeIntervalMs,
  });
  const front = { acquire: (priority: Priority) => gate.acquire(() => shared.acquire(priority)) };
  return { clock, shared, front };
}

/** What each call got; a permit is handed back at once (success), so queued calls are served in turn. */
async function outcomes(calls: Promise<OriginPermit>[]): Promise<string[]> {
  return Promise.all(
    calls.map((c) =>
      c.then(
        async (permit) => {
          await permit.release("success", "/ok");
          return "permit";
        },
        (e: unknown) => (isHerdlessError(e) ? e.code : "other"),
      ),
    ),
  );
}

describe("GuardFront: the shared guard sees a rate set by the origin, not by the traffic", () => {
  it("an open breaker is answered here until its next probe: 1,000 cold misses after it opened reach the shared guard 0 times", async () => {
    const { shared, front } = setup({ maxConcurrency: 4, maxQueue: 10 });
    for (const key of ["/a", "/b"]) await (await front.acquire("foreground")).release("failure", key);
    expect(await outcomes([front.acquire("foreground")])).toEqual(["BREAKER_OPEN"]);
    const before = shared.calls;

    const answers = await outcomes(Array.from({ length: 1_000 }, () => front.acquire("foreground")));

    expect(answers.every((a) => a === "BREAKER_OPEN")).toBe(true);
    expect(shared.calls - before).toBe(0);
  });

  it("after the retry time one call reaches the shared guard again and becomes the probe", async () => {
    const { clock, shared, front } = setup({ maxConcurrency: 4, maxQueue: 10 });
    for (const key of ["/a", "/b"]) await (await front.acquire("foreground")).release("failure", key);
    await outcomes([front.acquire("foreground")]);
    clock.advance(5_000);
    const before = shared.calls;

    const [probe, ...rest] = await outcomes(Array.from({ length: 50 }, () => front.acquire("foreground")));

    expect(probe).toBe("permit");
    expect(rest.every((a) => a === "BREAKER_OPEN")).toBe(true);
    // Only the scout asked; it became the probe.
    expect(shared.calls - before).toBe(1);
  });

  it("a key explosion keeps at most maxConcurrency + maxQueue calls on the shared guard; the cap is the shared guard's", async () => {
    const { shared, front } = setup({ maxConcurrency: 2, maxQueue: 3 });
    const answers = await outcomes(Array.from({ length: 500 }, () => front.acquire("foreground")));

    expect(shared.peakWaiting).toBeLessThanOrEqual(5);
    expect(shared.calls).toBeLessThanOrEqual(6);
    expect(answers.filter((a) => a === "permit").length).toBe(5);
    expect(answers.filter((a) => a === "QUEUE_FULL").length).toBe(495);
  });

  it("a refusal is forgotten after a permit: a full queue is believed for a quarter second, not its whole retry time", async () => {
    const { clock, shared, front } = setup({ maxConcurrency: 1, maxQueue: 0 });
    const held = await front.acquire("foreground");
    expect(await outcomes([front.acquire("foreground")])).toEqual(["QUEUE_FULL"]);
    await held.release("success", "/k");
    clock.advance(250);
    const before = shared.calls;

    expect(await outcomes([front.acquire("foreground")])).toEqual(["permit"]);
    expect(shared.calls - before).toBe(1);
  });

  it("one probe per probeIntervalMs: a refusal heard 10 ms before the probe is due holds the front 10 ms, not a second", async () => {
    const { clock, front } = setup({ maxConcurrency: 4, maxQueue: 10 }, 1_000);
    for (const key of ["/a", "/b"]) await (await front.acquire("foreground")).release("failure", key);
    /** One call through the front; a permit is the probe, and it fails: the origin is still down. */
    const call = async () => {
      const permit = await front.acquire("foreground").catch(() => undefined);
      await permit?.release("failure", "/a");
      return permit !== undefined;
    };
    const due: boolean[] = [];
    // 10 s of an open breaker: a call 10 ms before each probe is due, and one when it is due.
    for (let i = 0; i < 10; i++) {
      clock.advance(990);
      expect(await call()).toBe(false);
      clock.advance(10);
      due.push(await call());
    }
    // Rounded up to a second, the first refusal held the front past the probe's time: a probe
    // every other second (5 in 10 s), each a second late.
    expect(due).toEqual(Array(10).fill(true));
  });
});
