import { concatBytes } from "../http/http.ts";
import { EventLoopTurns } from "../http/event-loop-turns.ts";

/** An origin body read up to a limit: whole, or the chunks read past it and the rest still to read. */
export type BodyRead =
  | { kind: "complete"; body: Uint8Array }
  | { kind: "overflow"; chunks: Uint8Array[]; rest: ReadableStreamDefaultReader<Uint8Array> };

/** Reads `response`'s body whole unless it grows past `limit` bytes (then what was read, and the rest). */
export async function readBody(response: Response, limit: number): Promise<BodyRead> {
  if (!response.body) return { kind: "complete", body: new Uint8Array(0) };
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  const turns = new EventLoopTurns();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.byteLength;
    if (total > limit) return { kind: "overflow", chunks, rest: reader };
    await turns.passed(value.byteLength);
  }
  return { kind: "complete", body: concatBytes(chunks, total) };
}

/** The chunks already read, then the rest of the body, as one stream. */
export function prepend(
  chunks: Uint8Array[],
  rest: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = chunks.shift();
      if (next) return controller.enqueue(next);
      const { done, value } = await rest.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return rest.cancel(reason);
    },
  });
}
