import { afterEach, describe, expect, it, vi } from "vitest";
import { prepend, readBody } from "./body-read.ts";
import { fillBudgetView } from "../store/fill-budget.ts";

afterEach(() => void vi.useRealTimers());

/** A body the test writes chunk by chunk, or breaks. */
function scripted() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
  return { response: new Response(body), controller };
}

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (chunks: Uint8Array[]) => chunks.map((c) => new TextDecoder().decode(c)).join("");

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  const chunks: Uint8Array[] = [];
  const reader = stream.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) chunks.push(read.value);
  return text(chunks);
}

/** A body whose head came and whose rest has not, read with a 20 ms pause: handed over after it. */
async function pausedAfterHead() {
  vi.useFakeTimers();
  const { response, controller } = scripted();
  controller.enqueue(bytes("<head>"));
  const reading = readBody(response, 1024, 20);
  await vi.advanceTimersByTimeAsync(20);
  const read = await reading;
  if (read.kind !== "overflow") throw new Error("expected the body to be handed over");
  return { read, controller };
}

describe("readBody with a pause", () => {
  it("reads a body sent in one go whole", async () => {
    vi.useFakeTimers();
    const { response, controller } = scripted();
    controller.enqueue(bytes("<head>"));
    controller.enqueue(bytes("<body>"));
    controller.close();
    const read = await readBody(response, 1024, 20);
    expect(read.kind === "complete" && new TextDecoder().decode(read.body)).toBe("<head><body>");
  });

  it("hands over what came once the body pauses, then the rest as it comes", async () => {
    const { read, controller } = await pausedAfterHead();
    expect(text(read.chunks)).toBe("<head>");
    const stream = prepend(read.chunks, read.rest, read.pending);
    controller.enqueue(bytes("<body>"));
    controller.close();
    expect(await readAll(stream)).toBe("<head><body>");
  });

  it("does not wait on a pause before the first bytes (the origin's time to first byte is its own)", async () => {
    vi.useFakeTimers();
    const { response, controller } = scripted();
    const reading = readBody(response, 1024, 20);
    await vi.advanceTimersByTimeAsync(1_000);
    controller.enqueue(bytes("all"));
    controller.close();
    const read = await reading;
    expect(read.kind).toBe("complete");
  });

  it("a body that breaks after its pause errors the stream, never an unhandled rejection", async () => {
    const { read, controller } = await pausedAfterHead();
    controller.error(new Error("reset"));
    await vi.advanceTimersByTimeAsync(0);
    const stream = prepend(read.chunks, read.rest, read.pending);
    await expect(readAll(stream)).rejects.toThrow("reset");
  });
});

describe("readBody within the fill budget", () => {
  it("a body read whole while another holds the budget streams from where it passed it, the rest intact; the budget is given back", async () => {
    const first = scripted();
    const second = scripted();
    first.controller.enqueue(bytes("a".repeat(600)));
    const holding = readBody(first.response, 4096, undefined, 1000);
    // The first holds 600 of the 1,000 bytes while it waits for its end.
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(fillBudgetView().bytes).toBe(600);
    second.controller.enqueue(bytes("b".repeat(300)));
    second.controller.enqueue(bytes("c".repeat(300)));
    second.controller.close();
    const read = await readBody(second.response, 4096, undefined, 1000);
    // Past 1,000 together: handed over as a stream (its flight decides what to keep), never cut short.
    expect(read.kind).toBe("overflow");
    if (read.kind !== "overflow") return;
    expect(await readAll(prepend(read.chunks, read.rest, read.pending))).toBe("b".repeat(300) + "c".repeat(300));
    first.controller.close();
    expect(await holding).toMatchObject({ kind: "complete" });
    expect(fillBudgetView()).toMatchObject({ bytes: 0, peakBytes: 900 });
  });
});

describe("a body in many small chunks", () => {
  it("the chunks read before the body was handed over are passed on joined, in order: 150,000 one-byte chunks (an origin that flushes each byte as a chunk) reach the reader as a few pieces, in well under a second", async () => {
    const count = 150_000;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent < count) controller.enqueue(Uint8Array.of(sent++ % 251));
        else controller.close();
      },
    });
    // Past the limit after 100,000 bytes: those are held, the rest still to read.
    const read = await readBody(new Response(body), 100_000);
    if (read.kind !== "overflow") throw new Error("expected the body to be handed over");
    const started = performance.now();
    const reader = prepend(read.chunks, read.rest, read.pending).getReader();
    let total = 0;
    let pieces = 0;
    let inOrder = true;
    for (let part = await reader.read(); !part.done; part = await reader.read(), pieces++)
      for (const byte of part.value) inOrder &&= byte === total++ % 251;
    expect([total, inOrder]).toEqual([count, true]);
    // The 100,000 held ones as 64 KiB pieces (each its own trip through every stream behind,
    // and in workerd an RPC message and a socket write), then the rest as the origin sends it.
    expect(pieces).toBeLessThanOrEqual(2 + (count - 100_000));
    // Linear: ~0.1 s here. Each held chunk shifted off the front of the array cost a copy of
    // all the others once the array was large (V8 cannot trim such a one in place): 10 s and more.
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
