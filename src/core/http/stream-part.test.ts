import { describe, expect, it } from "vitest";
import { streamPart } from "./stream-part.ts";

/** A body of bytes 0..n-1 arriving in chunks of `size`; `cancelled` says whether its reader let go. */
function body(n: number, size: number): { stream: ReadableStream<Uint8Array>; cancelled: () => boolean } {
  let next = 0;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next >= n) return controller.close();
      const chunk = Uint8Array.from({ length: Math.min(size, n - next) }, (_, i) => next + i);
      next += chunk.length;
      controller.enqueue(chunk);
    },
    cancel() {
      cancelled = true;
    },
  });
  return { stream, cancelled: () => cancelled };
}

async function all(stream: ReadableStream<Uint8Array>): Promise<number[]> {
  const out: number[] = [];
  const reader = stream.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) out.push(...read.value);
  return out;
}

describe("streamPart: a Range cut from a body still arriving", () => {
  it.each([
    [0, 0],
    [3, 7],
    [4, 4],
    [5, 9],
    [0, 19],
    [17, 19],
  ])("bytes %i-%i across chunks of 5", async (start, end) => {
    const source = body(20, 5);
    const part = await all(streamPart(source.stream, start, end));
    expect(part).toEqual(Array.from({ length: end - start + 1 }, (_, i) => start + i));
  });

  it("lets go of the body once its last byte is out", async () => {
    const source = body(1000, 10);
    expect(await all(streamPart(source.stream, 15, 24))).toHaveLength(10);
    expect(source.cancelled()).toBe(true);
  });

  it("errors, never ends short, when the body ends before the range does", async () => {
    const source = body(10, 4);
    await expect(all(streamPart(source.stream, 5, 19))).rejects.toMatchObject({ code: "ORIGIN_TRUNCATED" });
  });
});
