import { describe, expect, it, vi } from "vitest";
import { alwaysReadyBody } from "../../../test/always-ready-body.ts";
import { fillBudgetView } from "../store/fill-budget.ts";
import { SharedBody } from "./shared-body.ts";

/** A body the test feeds by hand: `send` a chunk, then `end` or `fail`. */
function controlledSource() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let cancelled: unknown;
  const stream = new ReadableStream<Uint8Array>(
    {
      start: (c) => {
        controller = c;
      },
      cancel: (reason) => {
        cancelled = reason ?? "cancelled";
      },
    },
    { highWaterMark: 0 },
  );
  return {
    stream,
    send: (...bytes: number[]) => controller.enqueue(new Uint8Array(bytes)),
    sendBytes: (chunk: Uint8Array) => controller.enqueue(chunk),
    end: () => controller.close(),
    fail: (error: Error) => controller.error(error),
    cancelled: () => cancelled,
  };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<number[]> {
  const out: number[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) out.push(...chunk);
  return out;
}

async function countBytes(stream: ReadableStream<Uint8Array>): Promise<number> {
  let bytes = 0;
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) bytes += chunk.byteLength;
  return bytes;
}

async function readOne(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<number[]> {
  const { value } = await reader.read();
  return value ? Array.from(value) : [];
}

describe("SharedBody", () => {
  it("gives every reader the bytes as they arrive, before the origin finished", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 100 });
    const a = shared.reader()!.getReader();
    const b = shared.reader()!.getReader();
    origin.send(1, 2);
    expect(await readOne(a)).toEqual([1, 2]);
    expect(await readOne(b)).toEqual([1, 2]);
    origin.send(3);
    origin.end();
    expect(await readOne(a)).toEqual([3]);
    expect((await a.read()).done).toBe(true);
    expect(await readOne(b)).toEqual([3]);
    expect(await shared.ended).toEqual({ kind: "complete", body: new Uint8Array([1, 2, 3]) });
  });

  it("gives a late reader the kept prefix, then the rest", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 100 });
    const first = shared.reader()!.getReader();
    origin.send(1, 2);
    await readOne(first);
    const late = shared.reader()!;
    origin.send(3);
    origin.end();
    expect(await readAll(late)).toEqual([1, 2, 3]);
  });

  it("refuses late readers once the body passed keepBytes, and still streams it to the early ones", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 2 });
    const early = shared.reader()!;
    const all = readAll(early);
    origin.send(1, 2);
    origin.send(3, 4);
    await Promise.resolve();
    origin.end();
    expect(await all).toEqual([1, 2, 3, 4]);
    expect(shared.reader()).toBeUndefined();
    expect(await shared.ended).toEqual({ kind: "too-large", bytes: 4 });
  });

  it("errors every reader when the origin fails mid-body: an aborted body, never a short complete one", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 100 });
    const a = shared.reader()!.getReader();
    origin.send(1);
    expect(await readOne(a)).toEqual([1]);
    origin.fail(new Error("reset"));
    await expect(a.read()).rejects.toMatchObject({ code: "ORIGIN_TRUNCATED" });
    expect((await shared.ended).kind).toBe("failed");
    expect(shared.reader()).toBeUndefined();
  });

  it("treats fewer bytes than the declared length as truncated", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 100, declaredBytes: 3 });
    const all = readAll(shared.reader()!);
    origin.send(1, 2);
    origin.end();
    await expect(all).rejects.toMatchObject({ code: "ORIGIN_TRUNCATED" });
    expect(await shared.ended).toMatchObject({ kind: "failed", error: { code: "ORIGIN_TRUNCATED" } });
  });

  it("reads a body worth keeping to its end after every reader left", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 100 });
    await shared.reader()!.cancel();
    origin.send(7);
    origin.end();
    expect(await shared.ended).toEqual({ kind: "complete", body: new Uint8Array([7]) });
  });

  it("cancels a body too large to keep once nobody reads it", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 1 });
    const reader = shared.reader()!.getReader();
    origin.send(1, 2);
    expect(await readOne(reader)).toEqual([1, 2]);
    await reader.cancel();
    // Not a failure of the origin: a visitor closing a large download must not back the key off.
    expect((await shared.ended).kind).toBe("abandoned");
    expect(origin.cancelled()).toBeDefined();
  });

  it("reads a body too large to keep no further ahead of the slowest reader than its window", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 1, windowBytes: 2 });
    const slow = shared.reader()!.getReader();
    for (let i = 0; i < 10; i++) origin.send(i);
    // Let the pump run as far as it may.
    for (let i = 0; i < 20; i++) await Promise.resolve();
    expect(shared.receivedBytes).toBeLessThanOrEqual(4);
    // What arrived before the reader asked comes in one read.
    expect(await readOne(slow)).toEqual([0, 1, 2]);
  });

  it("gives a reader that fell behind what arrived meanwhile in one chunk, up to 256 KiB", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 1024 * 1024 });
    const reader = shared.reader()!.getReader();
    const kib = (n: number) => new Uint8Array(n * 1024).fill(n);
    for (const n of [100, 100, 100, 1]) origin.sendBytes(kib(n));
    origin.end();
    // The pump reads all of it before the reader asks.
    await shared.ended;
    const sizes: number[] = [];
    for (let read = await reader.read(); !read.done; read = await reader.read()) sizes.push(read.value.byteLength);
    expect(sizes).toEqual([200 * 1024, 101 * 1024]);
  });

  it("gives a reader that keeps up the small chunks that came together in pieces of 64 KiB or more, not one write each", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 1024 * 1024 });
    const reader = shared.reader()!.getReader();
    // The reader already waits: 100 chunks of 4 KiB, as a fetched body comes in workerd.
    const waiting = reader.read();
    for (let i = 0; i < 100; i++) origin.sendBytes(new Uint8Array(4 * 1024).fill(i));
    const sizes = [(await waiting).value!.byteLength];
    while (sizes.reduce((a, b) => a + b) < 400 * 1024) sizes.push((await reader.read()).value!.byteLength);
    // 6 × 64 KiB published as they gathered (joined when the reader was behind), then the last 16 KiB.
    expect(sizes.slice(0, -1).filter((size) => size < 64 * 1024)).toEqual([]);
    expect(sizes.at(-1)).toBe(16 * 1024);
    // Less than 64 KiB, then a pause: it comes at the next turn, without waiting for more or for the end.
    for (let i = 0; i < 3; i++) origin.sendBytes(new Uint8Array(4 * 1024));
    expect((await reader.read()).value!.byteLength).toBe(12 * 1024);
    origin.end();
    expect((await reader.read()).done).toBe(true);
  });

  it("lets timers and other work run while an always-ready origin streams, not only after the whole body passed", async () => {
    // An origin and a client on fast sockets: every read and write is ready at once. In
    // workerd such a body held every other request of the isolate (their timers, their
    // wake-ups) until its last byte: 44 of 50 clients of a 20 MB body timed out.
    const origin = alwaysReadyBody();
    const shared = new SharedBody(origin.body, { keepBytes: 1 });
    const client = shared.reader()!;
    const seen = { received: -1, read: -1 };
    let read = 0;
    setTimeout(() => {
      seen.received = shared.receivedBytes;
      seen.read = read;
    }, 0);
    for await (const chunk of client as unknown as AsyncIterable<Uint8Array>) read += chunk.byteLength;
    expect(read).toBe(origin.bytes);
    // The timer ran while the body still flowed: a few hundred KB in, not after the 4 MiB.
    expect(seen.received).toBeGreaterThan(0);
    expect(seen.read).toBeLessThan(origin.bytes);
    expect(seen.received).toBeLessThan(origin.bytes);
  });

  it("lets other work run while a late reader reads the kept body, which is all there", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 8 * 1024 * 1024 });
    for (let i = 0; i < 64; i++) origin.sendBytes(new Uint8Array(64 * 1024).fill(i));
    origin.end();
    expect((await shared.ended).kind).toBe("complete");
    let read = 0;
    let readWhenTimerRan = -1;
    setTimeout(() => (readWhenTimerRan = read), 0);
    for await (const chunk of shared.reader()! as unknown as AsyncIterable<Uint8Array>) read += chunk.byteLength;
    expect(read).toBe(4 * 1024 * 1024);
    expect(readWhenTimerRan).toBeGreaterThan(0);
    expect(readWhenTimerRan).toBeLessThan(read);
  });

  it("keeps a timer of the reader's own pending while it waits for the origin, and still gets the bytes after it fired", async () => {
    // workerd cancels a request with nothing of its own pending as hung: a client joined to
    // another request's fetch waits only on that request's pump, and its body was cut short.
    vi.useFakeTimers();
    try {
      const origin = controlledSource();
      const shared = new SharedBody(origin.stream, { keepBytes: 100 });
      const reader = shared.reader()!.getReader();
      let got: number[] | undefined;
      void readOne(reader).then((bytes) => (got = bytes));
      await vi.advanceTimersByTimeAsync(0);
      expect(vi.getTimerCount()).toBe(1);
      // The origin is silent for 5 s: the reader looks again by itself and keeps waiting.
      await vi.advanceTimersByTimeAsync(5_000);
      expect(got).toBeUndefined();
      expect(vi.getTimerCount()).toBe(1);
      origin.send(1, 2);
      await vi.advanceTimersByTimeAsync(0);
      expect(got).toEqual([1, 2]);
      origin.end();
      await vi.advanceTimersByTimeAsync(0);
      expect((await reader.read()).done).toBe(true);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("cuts off a reader that holds the others back past laggardMs: one client that stops reading never stalls the rest", async () => {
    vi.useFakeTimers();
    try {
      const origin = controlledSource();
      const shared = new SharedBody(origin.stream, { keepBytes: 1, windowBytes: 2, laggardMs: 30_000 });
      const stalled = shared.reader()!.getReader(); // asks, then never reads
      const fastBytes = readAll(shared.reader()!);
      for (let i = 0; i < 10; i++) origin.send(i);
      origin.end();
      await vi.advanceTimersByTimeAsync(29_000);
      // Held back by the stalled reader: only the window went by.
      expect(shared.receivedBytes).toBeLessThanOrEqual(4);
      await vi.advanceTimersByTimeAsync(2_000);
      expect(await fastBytes).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      await expect(stalled.read()).rejects.toMatchObject({ code: "CLIENT_TOO_SLOW" });
      expect((await shared.ended).kind).toBe("too-large");
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("cuts off a reader that trickles (less than a window every laggardMs) as well", async () => {
    vi.useFakeTimers();
    try {
      const origin = controlledSource();
      // The default 1 MiB window; a read takes at most 256 KiB of what is there.
      const shared = new SharedBody(origin.stream, { keepBytes: 1, laggardMs: 30_000 });
      const trickle = shared.reader()!.getReader();
      const fastBytes = countBytes(shared.reader()!);
      for (let i = 0; i < 64; i++) origin.sendBytes(new Uint8Array(64 * 1024));
      origin.end();
      const reads: Promise<unknown>[] = [];
      for (let round = 0; round < 4; round++) {
        await vi.advanceTimersByTimeAsync(20_000); // 256 KiB every 20 s: 384 KiB in 30 s, under the window
        const read = trickle.read().then(({ value }) => value?.byteLength ?? 0);
        read.catch(() => undefined);
        reads.push(read);
      }
      await vi.advanceTimersByTimeAsync(1_000);
      expect(await fastBytes).toBe(64 * 64 * 1024);
      const settled = await Promise.allSettled(reads);
      expect(settled.filter((r) => r.status === "fulfilled").length).toBeGreaterThan(0);
      expect(settled.at(-1)).toMatchObject({ status: "rejected", reason: { code: "CLIENT_TOO_SLOW" } });
    } finally {
      vi.useRealTimers();
    }
  });

  it("never cuts off a reader that is only slower than the others (a window or more every laggardMs): they go at its pace, its download is whole", async () => {
    vi.useFakeTimers();
    try {
      const origin = controlledSource();
      const shared = new SharedBody(origin.stream, { keepBytes: 1, windowBytes: 2, laggardMs: 30_000 });
      const slower = shared.reader()!.getReader();
      const fastBytes = readAll(shared.reader()!);
      for (let i = 0; i < 100; i++) origin.send(i);
      origin.end();
      const got: number[] = [];
      for (let second = 0; second < 200 && got.length < 100; second++) {
        await vi.advanceTimersByTimeAsync(1_000); // a byte a second: 30 bytes every 30 s, 15 windows
        const read = await slower.read();
        if (read.done) break;
        got.push(...read.value);
      }
      expect(got).toEqual(Array.from({ length: 100 }, (_, i) => i));
      expect((await fastBytes).length).toBe(100);
    } finally {
      vi.useRealTimers();
    }
  });

  it("never cuts off readers that are slow together and keep reading: nobody waits on them", async () => {
    vi.useFakeTimers();
    try {
      const origin = controlledSource();
      const shared = new SharedBody(origin.stream, { keepBytes: 1, windowBytes: 2, laggardMs: 30_000 });
      const slow = [shared.reader()!.getReader(), shared.reader()!.getReader()];
      for (let i = 0; i < 12; i++) origin.send(i);
      origin.end();
      const bodies: number[][] = [[], []];
      for (let round = 0; round < 12; round++) {
        await vi.advanceTimersByTimeAsync(20_000); // a chunk every 20 s each: slow, never stalled
        for (const [i, reader] of slow.entries()) {
          const read = await reader.read();
          if (!read.done) bodies[i]!.push(...read.value);
        }
      }
      const all = Array.from({ length: 12 }, (_, i) => i);
      expect(bodies).toEqual([all, all]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("cuts off a reader that reads nothing for laggardMs, alone or not: the origin body is cancelled and its permit freed", async () => {
    vi.useFakeTimers();
    try {
      const origin = controlledSource();
      const shared = new SharedBody(origin.stream, { keepBytes: 1, windowBytes: 2, laggardMs: 30_000 });
      const idle = shared.reader()!.getReader(); // asks, then never reads
      for (let i = 0; i < 10; i++) origin.send(i);
      await vi.advanceTimersByTimeAsync(29_000);
      expect(origin.cancelled()).toBeUndefined();
      await vi.advanceTimersByTimeAsync(1_000);
      await expect(idle.read()).rejects.toMatchObject({ code: "CLIENT_TOO_SLOW" });
      // The client was slow, not the origin.
      expect((await shared.ended).kind).toBe("abandoned");
      expect(origin.cancelled()).toBeDefined();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("SharedBody within the fill budget", () => {
  it("claims a declared length at once: a second body that does not fit beside it is streamed whole, not kept; the budget comes back at the ends", async () => {
    const first = controlledSource();
    const second = controlledSource();
    const kept = new SharedBody(first.stream, { keepBytes: 100, budgetBytes: 10, declaredBytes: 6 });
    const over = new SharedBody(second.stream, { keepBytes: 100, budgetBytes: 10, declaredBytes: 6 });
    expect([kept.overBudget, over.overBudget]).toEqual([false, true]);
    expect(fillBudgetView().bytes).toBe(6);
    const a = readAll(kept.reader()!);
    const b = readAll(over.reader()!);
    first.send(1, 2, 3);
    second.send(4, 5, 6);
    first.send(7, 8, 9);
    second.send(1, 2, 3);
    first.end();
    second.end();
    expect(await a).toEqual([1, 2, 3, 7, 8, 9]);
    expect(await b).toEqual([4, 5, 6, 1, 2, 3]);
    const ends = [await kept.ended, await over.ended];
    expect(ends.map((e) => e.kind)).toEqual(["complete", "too-large"]);
    expect(ends[0]!.kind === "complete" && Array.from(ends[0]!.body)).toEqual([1, 2, 3, 7, 8, 9]);
    expect(fillBudgetView().bytes).toBe(0);
  });

  it("drops the kept prefix of a body of unknown length once it would pass the budget: read on whole, never complete", async () => {
    const origin = controlledSource();
    const shared = new SharedBody(origin.stream, { keepBytes: 100, budgetBytes: 4 });
    const reading = readAll(shared.reader()!);
    origin.send(1, 2, 3);
    origin.send(4, 5);
    origin.send(6);
    origin.end();
    expect(await reading).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await shared.ended).toEqual({ kind: "too-large", bytes: 6 });
    expect(fillBudgetView().bytes).toBe(0);
  });
});

describe("SharedBody of many small chunks", () => {
  it("a body past keepBytes sent in small chunks (an export flushed row by row) drops the chunks its readers had at a constant cost each: 300,000 chunks of 16 bytes past a 1 MiB keepBytes read in well under a second, not one array shift over all the others each", async () => {
    const { body, bytes } = alwaysReadyBody(300_000, 16);
    const started = performance.now();
    const shared = new SharedBody(body, { keepBytes: 1024 * 1024 });
    expect(await countBytes(shared.reader()!)).toBe(bytes);
    expect(await shared.ended).toMatchObject({ kind: "too-large", bytes });
    // ~0.6 s. Shifted off one by one, the 65,536 chunks held when the body passed keepBytes,
    // and each window's after, copied all the rest each: 6 s.
    expect(performance.now() - started).toBeLessThan(3_000);
  });
});
