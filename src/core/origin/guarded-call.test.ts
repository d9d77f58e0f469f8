import { describe, expect, it } from "vitest";
import { alwaysReadyBody } from "../../../test/always-ready-body.ts";
import { manualTimers, trickle } from "../../../test/streamed-origin.ts";
import { ManualClock } from "../clock.ts";
import { parseConfig } from "../config.ts";
import { HerdlessError } from "../errors.ts";
import { LocalGuard } from "../guard/local-guard.ts";
import { breakerResource } from "../guard/breaker-resource.ts";
import { guardedOriginCall, type GuardedCallDeps, type OriginCallEvent } from "./guarded-call.ts";

const T0 = 1_700_000_000_000;

function setup(fetchImpl: GuardedCallDeps["fetch"], breaker: { failureThreshold?: number } = {}) {
  const clock = new ManualClock(T0);
  const { timers, fire } = manualTimers();
  const config = parseConfig({
    origin: { url: "http://origin.test", maxConcurrency: 2, queueTimeoutMs: 0, maxQueue: 0 },
    breaker: { failureThreshold: breaker.failureThreshold ?? 1, minFailingKeys: 1, failureRate: 0.01 },
  });
  const guard = new LocalGuard({ config, clock, timers });
  const calls: OriginCallEvent[] = [];
  const deps: GuardedCallDeps = { config, clock, guard, fetch: fetchImpl, timers, onOriginCall: (e) => calls.push(e) };
  const call = (path: string, maxBodyBytes = 0) =>
    guardedOriginCall(
      deps,
      { url: `http://origin.test${path}`, method: "GET", headers: [] },
      { priority: "foreground", timeoutMs: config.origin.timeoutMs, maxBodyBytes, key: path },
    );
  return { guard, call, calls, fire, config, clock };
}

/**
 * Reads the answer to `path` whose origin body is `body` to its end, with a zero timer set as
 * reading starts: the bytes read in all, and how many had been read when the timer ran (-1: never).
 */
async function readBesideTimer(body: ReadableStream<Uint8Array>, path: string) {
  const { call } = setup(async () => new Response(body));
  const result = await call(path);
  if (result.kind !== "response") throw new Error("expected a response");
  let read = 0;
  let readWhenTimerRan = -1;
  setTimeout(() => (readWhenTimerRan = read), 0);
  for await (const chunk of result.response.body as unknown as AsyncIterable<Uint8Array>) read += chunk.byteLength;
  return { read, readWhenTimerRan };
}

describe("guardedOriginCall", () => {
  it("holds the origin permit until a streamed body ends: a third slow body is refused while two stream", async () => {
    const bodies = [trickle(), trickle(), trickle()];
    let n = 0;
    const { guard, call } = setup(async () => new Response(bodies[n++]?.body ?? null));
    const a = await call("/a");
    const b = await call("/b");
    expect((await guard.snapshot()).inFlight).toBe(2);
    const c = await call("/c");
    expect(c.kind).toBe("refused");

    if (a.kind !== "response" || b.kind !== "response") throw new Error("expected two responses");
    bodies[0]?.send("hello");
    bodies[0]?.end();
    expect(await new Response(a.response.body as ReadableStream<Uint8Array>).text()).toBe("hello");
    expect((await guard.snapshot()).inFlight).toBe(1);
    // A client that goes away cancels the origin body and frees the slot too.
    await (b.response.body as ReadableStream<Uint8Array>).cancel("client gone");
    expect(bodies[1]?.cancelled).toBe(true);
    expect((await guard.snapshot()).inFlight).toBe(0);
  });

  it("lets timers and other requests' work run while an always-ready streamed body passes, not only after its end", async () => {
    // An origin and a client on fast sockets: each read is ready at once. Pumped by
    // JavaScript without a pause, such a body keeps workerd from polling for I/O, and every
    // other request of the isolate waits for its end.
    const origin = alwaysReadyBody();
    const { read, readWhenTimerRan } = await readBesideTimer(origin.body, "/large");
    expect(read).toBe(origin.bytes);
    expect(readWhenTimerRan).toBeGreaterThan(0);
    expect(readWhenTimerRan).toBeLessThan(read);
  });

  it("lets timers run while an always-ready body of many tiny chunks passes (an origin that flushes each byte), not only after its end", async () => {
    // workerd fires no timer while a body's reads keep resolving: counted in bytes alone, the
    // pump of such a body never gave the event loop a turn, and every deadline waited for its end.
    const origin = alwaysReadyBody(20_000, 1);
    const { read, readWhenTimerRan } = await readBesideTimer(origin.body, "/tiny");
    expect(read).toBe(origin.bytes);
    expect(readWhenTimerRan).toBeGreaterThanOrEqual(0);
    expect(readWhenTimerRan).toBeLessThan(read);
  });

  it("hands a client that always waits an origin's byte-by-byte flushes joined, whole and in order, not one piece per byte", async () => {
    const origin = alwaysReadyBody(20_000, 1);
    const { call } = setup(async () => new Response(origin.body));
    const result = await call("/tiny");
    if (result.kind !== "response") throw new Error("expected a response");
    let read = 0;
    let pieces = 0;
    let inOrder = true;
    for await (const chunk of result.response.body as unknown as AsyncIterable<Uint8Array>) {
      pieces++;
      for (const byte of chunk) inOrder &&= byte === read++ % 256;
    }
    expect([read, inOrder]).toEqual([origin.bytes, true]);
    // Each piece is a round trip through every stream behind (in workerd an RPC message and a
    // socket write): one per byte cost ~75 µs of CPU each.
    expect(pieces).toBeLessThan(origin.bytes / 10);
  });

  it("a cancelled body keeps its slot until the origin body is torn down: no second request while it is still open", async () => {
    let tornDown!: () => void;
    const origin = new ReadableStream<Uint8Array>({
      cancel: () => new Promise<void>((resolve) => (tornDown = resolve)),
    });
    const { guard, call } = setup(async () => new Response(origin));
    const result = await call("/leaving");
    if (result.kind !== "response") throw new Error("expected a response");
    const cancelled = (result.response.body as ReadableStream<Uint8Array>).cancel("client gone");
    await Promise.resolve();
    expect((await guard.snapshot()).inFlight).toBe(1);
    tornDown();
    await cancelled;
    expect((await guard.snapshot()).inFlight).toBe(0);
  });

  it("frees the slot once a body's declared Content-Length has arrived, though its reader never reads the end (workerd stops there)", async () => {
    const bodies = [trickle(), trickle()];
    let n = 0;
    const { guard, call } = setup(
      async () => new Response(bodies[n++]?.body ?? null, { headers: { "content-length": "2" } }),
    );
    const first = await call("/put-1");
    if (first.kind !== "response") throw new Error("expected a response");
    const reader = (first.response.body as ReadableStream<Uint8Array>).getReader();
    const read = reader.read();
    bodies[0]?.send("OK");
    expect(new TextDecoder().decode((await read).value)).toBe("OK");
    // The reader stops at the declared length, as workerd does; the origin never closed its stream.
    expect((await guard.snapshot()).inFlight).toBe(0);
    expect((await reader.read()).done).toBe(true);
    // A body shorter than declared still holds the slot until it ends.
    const second = await call("/put-2");
    if (second.kind !== "response") throw new Error("expected a response");
    const secondReader = (second.response.body as ReadableStream<Uint8Array>).getReader();
    const partial = secondReader.read();
    bodies[1]?.send("O");
    await partial;
    expect((await guard.snapshot()).inFlight).toBe(1);
  });

  it("a permit lost mid-call (the guard's lease could not be renewed) stops the streamed body and the pending request; each is released once, neutral", async () => {
    const body = trickle();
    let answer!: (res: Response) => void;
    let n = 0;
    const { config } = setup(async () => new Response(null));
    const permits: { lost: AbortController; releases: string[] }[] = [];
    const guard: GuardedCallDeps["guard"] = {
      acquire: async () => {
        const lost = new AbortController();
        const held = { lost, releases: [] as string[] };
        permits.push(held);
        return { lost: lost.signal, release: (outcome) => void held.releases.push(outcome) };
      },
      snapshot: async () => ({ breaker: "closed", inFlight: 0, queued: 0 }),
    };
    const fetchImpl: GuardedCallDeps["fetch"] = (_url, init) =>
      n++ === 0
        ? Promise.resolve(new Response(body.body))
        : new Promise((resolve, reject) => {
            answer = resolve;
            init?.signal?.addEventListener("abort", () => reject(init.signal?.reason));
          });
    const deps: GuardedCallDeps = { config, clock: new ManualClock(T0), guard, fetch: fetchImpl };
    const call = (path: string) =>
      guardedOriginCall(
        deps,
        { url: `http://origin.test${path}`, method: "GET", headers: [] },
        { priority: "foreground", timeoutMs: config.origin.timeoutMs, maxBodyBytes: 0, key: path },
      );

    const streaming = await call("/long");
    if (streaming.kind !== "response") throw new Error("expected a response");
    const reader = (streaming.response.body as ReadableStream<Uint8Array>).getReader();
    body.send("first");
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("first");
    permits[0]!.lost.abort(new HerdlessError("COORDINATOR_UNAVAILABLE", "origin permit lost: test"));
    await expect(reader.read()).rejects.toThrow(/origin permit lost: test/);
    expect(body.cancelled).toBe(true);
    expect(permits[0]!.releases).toEqual(["neutral"]);

    const pending = call("/slow");
    await Promise.resolve();
    permits[1]!.lost.abort(new HerdlessError("COORDINATOR_UNAVAILABLE", "origin permit lost: test"));
    const failed = await pending;
    expect(failed).toMatchObject({ kind: "failed", error: { code: "COORDINATOR_UNAVAILABLE" } });
    expect(permits[1]!.releases).toEqual(["neutral"]);
    answer(new Response("too late"));
  });

  it("cuts off a body idle past origin.streamIdleTimeoutMs, frees its slot and counts a failure", async () => {
    const body = trickle();
    const { guard, call, fire, config } = setup(async () => new Response(body.body));
    const result = await call("/slow");
    if (result.kind !== "response") throw new Error("expected a response");
    const reader = (result.response.body as ReadableStream<Uint8Array>).getReader();
    const read = reader.read();
    fire(config.origin.streamIdleTimeoutMs);
    await expect(read).rejects.toMatchObject({ code: "ORIGIN_TIMEOUT" });
    expect(body.cancelled).toBe(true);
    const snapshot = await guard.snapshot();
    expect(snapshot.inFlight).toBe(0);
    expect(snapshot.breaker).toBe("open");
  });

  it("cuts off a body that keeps trickling past origin.streamTimeoutMs", async () => {
    const body = trickle();
    const { guard, call, fire, config } = setup(async () => new Response(body.body));
    const result = await call("/forever");
    if (result.kind !== "response") throw new Error("expected a response");
    const reader = (result.response.body as ReadableStream<Uint8Array>).getReader();
    body.send("x");
    expect((await reader.read()).done).toBe(false);
    fire(config.origin.streamTimeoutMs);
    await expect(reader.read()).rejects.toMatchObject({ code: "ORIGIN_TIMEOUT" });
    expect((await guard.snapshot()).inFlight).toBe(0);
  });

  it("cuts off a body that keeps sending past origin.streamTimeoutMs though no timer fires meanwhile (workerd runs none while reads keep resolving)", async () => {
    const { guard, call, config, clock } = setup(async () => new Response(body));
    // An origin that flushes a byte every second for twice the cap; the runtime's timers never fire.
    const stepMs = 1_000;
    const chunks = (2 * config.origin.streamTimeoutMs) / stepMs;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === chunks) return controller.close();
        clock.advance(stepMs);
        controller.enqueue(Uint8Array.of(sent++));
      },
    });
    const result = await call("/forever");
    if (result.kind !== "response") throw new Error("expected a response");
    let read = 0;
    const reading = (async () => {
      for await (const chunk of result.response.body as unknown as AsyncIterable<Uint8Array>) read += chunk.byteLength;
    })();
    await expect(reading).rejects.toMatchObject({ code: "ORIGIN_TIMEOUT" });
    expect(read).toBeLessThan(config.origin.streamTimeoutMs / stepMs);
    expect(sent).toBeLessThan(chunks);
    expect((await guard.snapshot()).inFlight).toBe(0);
  });

  it("counts 500 and 404 as the origin speaking (breaker stays closed), 503 as sickness", async () => {
    const statuses = [500, 404, 500, 503];
    const { guard, call, calls } = setup(async () => new Response("x", { status: statuses.shift() ?? 200 }));
    for (const path of ["/a", "/b", "/c"]) await call(path, 1_000);
    expect((await guard.snapshot()).breaker).toBe("closed");
    await call("/d", 1_000);
    expect((await guard.snapshot()).breaker).toBe("open");
    expect(calls.map((c) => c.outcome)).toEqual(["5xx", "other", "5xx", "5xx"]);
  });

  it("does not count a request the runtime would not send (TRACE, Expect) against the origin", async () => {
    const { guard, call, calls } = setup(async () => {
      throw new TypeError("'TRACE' HTTP method is unsupported.");
    });
    const result = await call("/trace");
    expect(result).toMatchObject({ kind: "failed", error: { code: "ORIGIN_UNSENDABLE" } });
    expect((await guard.snapshot()).breaker).toBe("closed");
    expect(calls).toHaveLength(1);
  });

  it("counts a refused connection as sickness", async () => {
    const { guard, call } = setup(async () => {
      throw new TypeError("fetch failed", {
        cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
      });
    });
    expect(await call("/x")).toMatchObject({ kind: "failed", error: { code: "ORIGIN_NETWORK" } });
    expect((await guard.snapshot()).breaker).toBe("open");
  });
});

describe("breakerResource", () => {
  it("counts one resource per path as frameworks route it: query, case, ;params, repeated and trailing slashes, encoded unreserved bytes", () => {
    const one = [
      "http://o.test/search",
      "http://o.test/search?q=1",
      "http://o.test/Search/?q=2#x",
      "http://o.test//search;jsessionid=3",
      "http://o.test/%73earch",
      "http://o.test/search//",
    ];
    expect(new Set(one.map(breakerResource))).toEqual(new Set(["http://o.test/search"]));
    // Other paths stay other resources: an outage across pages still opens the breaker.
    const others = ["http://o.test/", "http://o.test/a", "http://o.test/a/b", "http://o.test/a%2Fb", "http://o.test"];
    expect(new Set(others.map(breakerResource)).size).toBe(others.length);
  });
});
