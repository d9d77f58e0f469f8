import { concatBytes, joined, ORIGIN_JOIN_BYTES } from "../http/http.ts";
import { EventLoopTurns } from "../http/event-loop-turns.ts";
import { withinMs } from "../within-ms.ts";
import { FillClaim } from "../store/fill-budget.ts";

/**
 * An origin body read up to a limit: whole, or what was read before it passed the limit (or
 * paused) and the rest still to read, `pending` the read already asked of it.
 */
export type BodyRead =
  | { kind: "complete"; body: Uint8Array }
  | {
      kind: "overflow";
      chunks: Uint8Array[];
      rest: ReadableStreamDefaultReader<Uint8Array>;
      pending?: Promise<ReadableStreamReadResult<Uint8Array>>;
    };

/**
 * Reads `response`'s body whole unless it grows past `limit` bytes or the fill budget
 * (`budgetBytes`: what every body held to store may hold together), or, with `pauseMs`, stops
 * for that long once some of it is in: then what was read, and the rest. A page flushed in
 * parts (its head at once, the rest once rendered: streamed server rendering, an early flush)
 * reaches its client as the origin sends it, not when the origin finishes; a body sent in one
 * go has no such pause between its packets.
 */
export async function readBody(
  response: Response,
  limit: number,
  pauseMs?: number,
  budgetBytes = Number.POSITIVE_INFINITY,
): Promise<BodyRead> {
  if (!response.body) return { kind: "complete", body: new Uint8Array(0) };
  // Claimed while read (store/fill-budget.ts); past the budget the body streams, kept or not by its flight.
  const claim = new FillClaim(budgetBytes);
  try {
    return await readUpTo(response.body.getReader(), limit, claim, pauseMs);
  } finally {
    claim.release();
  }
}

async function readUpTo(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  limit: number,
  claim: FillClaim,
  pauseMs?: number,
): Promise<BodyRead> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const turns = new EventLoopTurns();
  for (;;) {
    const next = reader.read();
    const read =
      pauseMs !== undefined && total > 0 ? await withinMs(next, pauseMs) : { settled: true, value: await next };
    if (!read.settled) {
      // Its outcome is the stream's first pull's; until then a failure must not go unhandled.
      next.catch(() => undefined);
      return { kind: "overflow", chunks, rest: reader, pending: next };
    }
    const { done, value } = read.value;
    if (done) break;
    chunks.push(value);
    total += value.byteLength;
    if (total > limit || !claim.cover(total)) return { kind: "overflow", chunks, rest: reader };
    await turns.passed(value.byteLength);
  }
  return { kind: "complete", body: concatBytes(chunks, total) };
}

/** What a chunk already passed on is replaced with, so that the stream holds it no longer. */
const PASSED = new Uint8Array(0);

/**
 * The chunks already read, then the rest of the body, as one stream. The chunks read are
 * passed on joined (http.ts {@link joined}): an origin that flushes every byte as a chunk of
 * its own leaves tens of thousands of them, each a round trip through every stream behind
 * this one (in workerd, ~75 µs of CPU each across the key's object and the edge). They are
 * walked by index, each let go once passed on: shifting each off the front of an array that
 * large copied all the others (V8 trims only a small array in place).
 */
export function prepend(
  chunks: Uint8Array[],
  rest: ReadableStreamDefaultReader<Uint8Array>,
  pending?: Promise<ReadableStreamReadResult<Uint8Array>>,
): ReadableStream<Uint8Array> {
  let index = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (index < chunks.length) {
        const { chunk, count } = joined(chunks, index, chunks.length, ORIGIN_JOIN_BYTES);
        chunks.fill(PASSED, index, (index += count));
        return controller.enqueue(chunk);
      }
      const read = pending ?? rest.read();
      pending = undefined;
      const { done, value } = await read;
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return rest.cancel(reason).catch(() => undefined);
    },
  });
}
