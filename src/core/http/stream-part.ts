import { HerdlessError } from "../errors.ts";

/**
 * Bytes `start` to `end` (inclusive) of a body still arriving, as their own stream: the bytes
 * before them are read and dropped, and once the last is out the body is let go (cancelled
 * for this reader: a fill still stores it for the others; a body too large to keep that no one
 * else reads stops there). A body that ends before `end` errors the part, so its client sees
 * an aborted answer, never a short one that looks complete.
 *
 * @example
 * const part = streamPart(result.body, 2_500_000, 2_599_999); // a 206 of 100,000 bytes
 */
export function streamPart(body: ReadableStream<Uint8Array>, start: number, end: number): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  // Offset in the body of the next byte read.
  let at = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          controller.error(new HerdlessError("ORIGIN_TRUNCATED", `body ended at ${at} bytes, before byte ${end}`));
          return;
        }
        const from = at;
        at += value.byteLength;
        if (at <= start) continue;
        controller.enqueue(value.subarray(Math.max(0, start - from), Math.min(value.byteLength, end + 1 - from)));
        if (at > end) {
          controller.close();
          await reader.cancel().catch(() => undefined);
        }
        return;
      }
    },
    cancel(reason) {
      return reader.cancel(reason).catch(() => undefined);
    },
  });
}
