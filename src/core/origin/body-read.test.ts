import { afterEach, describe, expect, it, vi } from "vitest";
import { prepend, readBody } from "./body-read.ts";

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
