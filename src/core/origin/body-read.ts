import { concatBytes, joined, ORIGIN_JOIN_BYTES } from "../http/http.ts";
import { EventLoopTurns } from "../http/event-loop-turns.ts";
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
  const pause = pauseMs === undefined ? undefined : new PauseWatch(pauseMs);
  try {
    for (;;) {
      const next = reader.read();
      const read = pause && total > 0 ? await pause.within(next) : await next;
      if (read === PAUSED) {
        // Its outcome is the stream's first pull's; until then a failure must not go unhandled.
        next.catch(() => undefined);
        return { kind: "overflow", chunks, rest: reader, pending: next };
      }
      const { done, value } = read;
      if (done) break;
      chunks.push(value);
      total += value.byteLength;
      if (total > limit || !claim.cover(total)) return { kind: "overflow", chunks, rest: reader };
      await turns.passed(value.byteLength);
    }
  } finally {
    pause?.stop();
  }
  return { kind: "complete", body: concatBytes(chunks, total) };
}

const PAUSED = Symbol("paused");

/**
 * Tells a pause of `pauseMs` in a body being read, with one timer for the whole body, not one
 * set and cleared for each chunk: an origin that flushes each byte as a chunk sent 65,536 of
 * them before its body was handed on, and a timer each (with its race) was most of their cost
 * in workerd. The timer looks every `pauseMs` whether a chunk came since it last looked: a
 * pause is told between `pauseMs` and twice that after the last chunk.
 */
class PauseWatch {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private arrived = false;
  private paused: (() => void) | undefined;

  constructor(private readonly pauseMs: number) {}

  /** `next`'s result, or {@link PAUSED} once the body paused while it was awaited. */
  within<T>(next: Promise<T>): Promise<T | typeof PAUSED> {
    this.timer ??= setTimeout(() => this.look(), this.pauseMs);
    return new Promise<T | typeof PAUSED>((resolve, reject) => {
      this.paused = () => resolve(PAUSED);
      next.then((value) => {
        this.arrived = true;
        this.paused = undefined;
        resolve(value);
      }, reject);
    });
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private look(): void {
    this.timer = undefined;
    if (!this.arrived && this.paused) return this.paused();
    this.arrived = false;
    this.timer = setTimeout(() => this.look(), this.pauseMs);
  }
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
