import { withinMs } from "../within-ms.ts";

/**
 * Bytes a stream pumped by JavaScript passes on before it waits for the next turn of the
 * event loop (a timer). One whose source and sink are always ready (an origin and clients on
 * fast sockets) otherwise never lets the runtime poll for I/O: in workerd, timers, new
 * requests and the wake-ups of other requests' readers (which cross request contexts) all
 * waited until the whole body had passed, and 44 of 50 clients of a 20 MB body timed out.
 * A turn costs about a millisecond.
 */
const TURN_BYTES = 256 * 1024;

/**
 * Chunks a stream pumped by JavaScript passes on before it waits for the next turn, however
 * small they are. workerd fires no timer while the reads of a body keep resolving (measured: a
 * 300 ms timer set before 300,000 one-byte chunks were read did not fire in the 3.7 s they
 * took), so an origin that flushes each byte held every deadline of the isolate
 * (`origin.streamTimeoutMs` among them: a 4 s cap let a body run 30 s) until its end, with
 * never 256 KiB passed. A turn every 1,024 chunks had that timer fire at 305 ms, for no
 * measurable cost.
 */
const TURN_CHUNKS = 1024;

/**
 * The turns one JavaScript pump owes the event loop: call {@link passed} with each chunk it
 * handed on; every {@link TURN_BYTES} or {@link TURN_CHUNKS} it waits for the next turn.
 *
 * @example
 * const turns = new EventLoopTurns();
 * for (;;) { const { done, value } = await source.read(); if (done) break; sink.enqueue(value); await turns.passed(value.byteLength); }
 */
export class EventLoopTurns {
  private sinceTurn = 0;
  private chunksSinceTurn = 0;

  /** Resolves at once, or at the next turn of the event loop once {@link TURN_BYTES} or {@link TURN_CHUNKS} passed since the last. */
  async passed(bytes: number): Promise<void> {
    this.sinceTurn += bytes;
    if (this.sinceTurn < TURN_BYTES && ++this.chunksSinceTurn < TURN_CHUNKS) return;
    this.sinceTurn = 0;
    this.chunksSinceTurn = 0;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/**
 * Waits until `arm`'s wake-up is called, or `ms` passed, whichever comes first, with a timer
 * of the caller's own beside the wake-up: workerd cancels a request that has nothing of its
 * own pending as hung, and one that waits for another request's progress (a reader of the
 * body its isolate's flight fetches, pumped in the leader's request) has only that wake-up.
 * Such a client's body was cut short after 200 KB. The caller looks again when it resolves.
 *
 * @example
 * await wakeOrTimer((wake) => (reader.wake = wake), 1_000);
 */
export async function wakeOrTimer(arm: (wake: () => void) => void, ms: number): Promise<void> {
  await withinMs(new Promise<void>((resolve) => arm(resolve)), ms);
}
