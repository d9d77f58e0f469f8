import { afterEach, describe, expect, it } from "vitest";
import { alwaysReadyBody } from "../../../test/always-ready-body.ts";
import { manualTimers, trickle } from "../../../test/streamed-origin.ts";
import { ManualClock } from "../clock.ts";
import { parseConfig, type ConfigInput } from "../config.ts";
import { LocalGuard } from "../guard/local-guard.ts";
import { guardedOriginCall, type GuardedCallDeps } from "./guarded-call.ts";
import { AheadQueue, readAheadHeldBytes } from "./read-ahead.ts";

const KiB = 1024;
const bodies: ReadableStream<Uint8Array>[] = [];
afterEach(async () => {
  // Whatever a test left unread goes back to the budget, which the whole process shares.
  for (const body of bodies.splice(0)) await body.cancel().catch(() => undefined);
  expect(readAheadHeldBytes()).toBe(0);
});

function setup(origin: Partial<ConfigInput["origin"]>, fetchImpl: GuardedCallDeps["fetch"]) {
  const clock = new ManualClock(1_700_000_000_000);
  const { timers, fire } = manualTimers();
  const config = parseConfig({ origin: { url: "http://origin.test", maxConcurrency: 1, ...origin } });
  const guard = new LocalGuard({ config, clock, timers });
  const deps: GuardedCallDeps = { config, clock, guard, fetch: fetchImpl, timers };
  const call = async (path: string) => {
    const result = await guardedOriginCall(
      deps,
      { url: `http://origin.test${path}`, method: "GET", headers: [] },
      { priority: "foreground", timeoutMs: config.origin.timeoutMs, maxBodyBytes: 0, key: path },
    );
    if (result.kind !== "response") return result;
    bodies.push(result.response.body as ReadableStream<Uint8Array>);
    return { ...result, body: result.response.body as ReadableStream<Uint8Array> };
  };
  return { guard, call, fire, config };
}

/** Lets the pumps run until `done` holds (each turn of theirs is a zero timer). */
async function until(done: () => boolean): Promise<void> {
  for (let turn = 0; turn < 1_000 && !done(); turn++) await new Promise((resolve) => setTimeout(resolve, 0));
  expect(done()).toBe(true);
}

async function turns(n: number): Promise<void> {
  for (let turn = 0; turn < n; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
}

async function inFlight(guard: LocalGuard): Promise<number> {
  return (await guard.snapshot()).inFlight;
}

describe("reading a streamed origin body ahead of its client", () => {
  it("reads a body that fits origin.readAheadBytes to its end before the client reads: the permit is free, the client still gets every byte", async () => {
    const origin = alwaysReadyBody(16, 64 * KiB); // 1 MiB
    const { guard, call } = setup({ readAheadBytes: 2 * 1024 * KiB }, async () => new Response(origin.body));
    const result = await call("/private");
    if (result.kind !== "response") throw new Error("expected a response");
    let free = false;
    await until(() => (void guard.snapshot().then((s) => (free = s.inFlight === 0)), free));
    expect(readAheadHeldBytes()).toBe(origin.bytes);
    expect((await new Response(result.body).arrayBuffer()).byteLength).toBe(origin.bytes);
    expect(readAheadHeldBytes()).toBe(0);
  });

  it("past origin.readAheadBytes reads only as the client reads, and past origin.readAheadBudgetBytes nothing ahead", async () => {
    const origins = [alwaysReadyBody(64, 64 * KiB), alwaysReadyBody(64, 64 * KiB)];
    let n = 0;
    const { call } = setup(
      { maxConcurrency: 2, readAheadBytes: 256 * KiB, readAheadBudgetBytes: 256 * KiB },
      async () => new Response(origins[n++]!.body),
    );
    const first = await call("/big-1");
    if (first.kind !== "response") throw new Error("expected a response");
    await until(() => origins[0]!.sent() === 4);
    // The second body finds the budget spent: nothing is read before its client asks.
    const second = await call("/big-2");
    if (second.kind !== "response") throw new Error("expected a response");
    await turns(20);
    expect([origins[0]!.sent(), origins[1]!.sent(), readAheadHeldBytes()]).toEqual([4, 0, 256 * KiB]);
    const reader = second.body.getReader();
    expect((await reader.read()).value?.byteLength).toBe(64 * KiB);
    // The client that leaves gives its read-ahead back: the other body may read ahead now.
    await first.body.cancel("client gone");
    expect(readAheadHeldBytes()).toBe(0);
    // The next read of the other's client finds it.
    await reader.read();
    await until(() => origins[1]!.sent() >= 4);
    await reader.cancel();
  });

  it("a client that holds its permit back while another call queues for one, reading less than a read-ahead per origin.streamIdleTimeoutMs, is cut off: the queued call gets the permit", async () => {
    const origin = alwaysReadyBody(1_000, 64 * KiB);
    const { guard, call, fire, config } = setup(
      { readAheadBytes: 256 * KiB, queueTimeoutMs: 60_000 },
      async (url) => new Response(String(url).endsWith("/page") ? "page" : origin.body),
    );
    const slow = await call("/big");
    if (slow.kind !== "response") throw new Error("expected a response");
    await until(() => origin.sent() === 4);
    const reader = slow.body.getReader();
    await reader.read(); // a little, now and then: never idle
    await until(() => origin.sent() === 5);
    await turns(3); // the pump waits on the client: the watch is set
    // Nobody waits: a slow client goes on at its pace.
    fire(config.origin.streamIdleTimeoutMs);
    await turns(3);
    await reader.read();
    await until(() => origin.sent() === 6);
    const victim = call("/page");
    expect(await inFlight(guard)).toBe(1);
    fire(config.origin.streamIdleTimeoutMs);
    expect(await victim).toMatchObject({ kind: "response" });
    await expect(reader.read()).rejects.toMatchObject({ code: "CLIENT_TOO_SLOW" });
    expect(origin.sent()).toBe(6);
    expect((await guard.snapshot()).breaker).toBe("closed");
  });

  it("the pace is looked at every half origin.queueTimeoutMs: a call queued behind a trickler is served before its queue timeout, not at the next streamIdleTimeoutMs", async () => {
    const origin = alwaysReadyBody(1_000, 64 * KiB);
    const { call, fire, config } = setup(
      { readAheadBytes: 256 * KiB },
      async (url) => new Response(String(url).endsWith("/page") ? "page" : origin.body),
    );
    expect([config.origin.queueTimeoutMs, config.origin.streamIdleTimeoutMs]).toEqual([10_000, 30_000]);
    const slow = await call("/big");
    if (slow.kind !== "response") throw new Error("expected a response");
    await until(() => origin.sent() === 4);
    await turns(3);
    const victim = call("/page");
    fire(5_000);
    expect(await victim).toMatchObject({ kind: "response" });
    await expect(slow.body.getReader().read()).rejects.toMatchObject({ code: "CLIENT_TOO_SLOW" });
  });

  it("a client that keeps a read-ahead's pace is not cut, though others queue", async () => {
    const origin = alwaysReadyBody(1_000, 64 * KiB);
    const { call, fire, config } = setup(
      { readAheadBytes: 1024 * KiB, queueTimeoutMs: 60_000 },
      async () => new Response(origin.body),
    );
    const download = await call("/big");
    if (download.kind !== "response") throw new Error("expected a response");
    await until(() => origin.sent() === 16);
    void call("/page");
    const reader = download.body.getReader();
    for (let read = 0; read < 16; read++) await reader.read();
    fire(config.origin.streamIdleTimeoutMs);
    expect((await reader.read()).done).toBe(false);
    await reader.cancel();
  });

  it("an origin body that breaks off after bytes were read ahead gives the client those bytes, then the error", async () => {
    let origin!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (origin = c) });
    const { guard, call } = setup({}, async () => new Response(body));
    const result = await call("/broken");
    if (result.kind !== "response") throw new Error("expected a response");
    origin.enqueue(new TextEncoder().encode("part"));
    await turns(3);
    origin.error(new Error("connection reset"));
    await turns(3);
    expect(await inFlight(guard)).toBe(0);
    const reader = result.body.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("part");
    await expect(reader.read()).rejects.toMatchObject({ code: "ORIGIN_TRUNCATED" });
  });

  it("the permit of a body read to its end is the origin's success, though its client is later cut off as too slow at origin.streamTimeoutMs", async () => {
    const body = trickle();
    const { guard, call, fire, config } = setup({}, async () => new Response(body.body));
    const result = await call("/done");
    if (result.kind !== "response") throw new Error("expected a response");
    body.send("all of it");
    body.end();
    let free = false;
    await until(() => (void inFlight(guard).then((n) => (free = n === 0)), free));
    fire(config.origin.streamTimeoutMs);
    await expect(result.body.getReader().read()).rejects.toMatchObject({ code: "CLIENT_TOO_SLOW" });
    expect(readAheadHeldBytes()).toBe(0);
    expect((await guard.snapshot()).breaker).toBe("closed");
  });
});

describe("a read-ahead of many small chunks", () => {
  it("an origin that flushes each byte as a chunk: 300,000 one-byte chunks read ahead reach the client in order, joined into a few pieces (a chunk alone at once), at a constant cost each, and go back to the budget", () => {
    const ahead = new AheadQueue(parseConfig({ origin: { url: "http://origin.test" } }));
    let pushed = 0;
    let taken = 0;
    let pieces = 0;
    let inOrder = true;
    const push = (n: number) => {
      for (const end = pushed + n; pushed < end; pushed++) ahead.push(Uint8Array.of(pushed % 251));
    };
    const take = () => {
      for (let chunk; (chunk = ahead.shift()); pieces++) for (const byte of chunk) inOrder &&= byte === taken++ % 251;
    };
    const started = performance.now();
    push(1);
    take();
    expect([taken, pieces]).toEqual([1, 1]);
    // The pump ahead of a slow client, then the client catching up while more comes.
    push(150_000);
    expect(readAheadHeldBytes()).toBe(150_000);
    take();
    push(149_999);
    expect(readAheadHeldBytes()).toBe(149_999);
    take();
    expect([taken, inOrder, ahead.empty, readAheadHeldBytes()]).toEqual([300_000, true, true, 0]);
    // One piece per 64 KiB read ahead, not one per byte.
    expect(pieces).toBeLessThanOrEqual(1 + Math.ceil(150_000 / 65_536) * 2);
    // Linear: ~50 ms. Shifted off the front, past ~16,000 chunks each take copied all the rest: seconds.
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
