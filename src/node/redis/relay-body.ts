import { HerdlessError, isHerdlessError } from "../../core/errors.ts";
import type { RedisConnection } from "./connection.ts";

/** Body bytes per record entry at most: big enough to be few commands, small enough to arrive early. */
export const PIECE_BYTES = 256 * 1024;
/** Bytes read from the body ahead of the pieces written to Redis. */
const QUEUED_BYTES = 4 * PIECE_BYTES;
/** Entries read per command by a follower. */
const ENTRIES_PER_READ = 8;
/** A follower that heard nothing for this long looks anyway (a notification missed, or the record gone). */
const QUIET_MS = 500;
/** How often a writer whose window is full looks again for a reader to have moved on. */
const ROOM_POLL_MS = 25;

/** Whether the next piece may be written: yes, not yet (a reader still needs what it would push out), or the record is gone. */
export type Room = "yes" | "full" | "gone";

/** One stream entry as ioredis returns it: id, then field and value pairs. */
export type StreamEntry = [Buffer, Buffer[]];

/**
 * Copies a body into the record piece by piece, reading on while a piece is written (up to
 * a few pieces ahead), so the origin's pace, not Redis's round trips, sets the followers'.
 */
export class PieceWriter {
  /**
   * `room` is asked before each piece (ROOM in relay-scripts.ts): while it says "full" the
   * writer waits, so Redis holds a bounded window of the body and the origin is read at the
   * pace of the slowest process reading it, as within one process.
   */
  constructor(
    readonly append: (field: "b" | "e", value: Uint8Array | string) => Promise<boolean>,
    readonly room: () => Promise<Room> = async () => "yes",
  ) {}

  async pump(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const queue: Uint8Array[] = [];
    let queued = 0;
    let end: string | undefined;
    let signal: (() => void) | undefined;
    const changed = () => new Promise<void>((resolve) => (signal = resolve));
    const notify = () => {
      const s = signal;
      signal = undefined;
      s?.();
    };
    const reading = (async () => {
      try {
        for (;;) {
          while (queued >= QUEUED_BYTES && end === undefined) await changed();
          if (end !== undefined) return;
          const { done, value } = await reader.read();
          if (done) return void (end ??= "complete");
          queue.push(value);
          queued += value.byteLength;
          notify();
        }
      } catch (error) {
        end ??= `failed:${isHerdlessError(error) ? error.code : "ORIGIN_TRUNCATED"}`;
      } finally {
        notify();
      }
    })();
    try {
      for (;;) {
        if (queued === 0) {
          if (end !== undefined) break;
          await changed();
          continue;
        }
        // A source that failed while the window was full: its end is written, not the rest.
        const room = await this.roomFor(() => end !== undefined && end !== "complete");
        if (room === "gone") throw new HerdlessError("COORDINATOR_UNAVAILABLE", "relay record gone");
        if (room === "full") break;
        const piece = take(queue, Math.min(queued, PIECE_BYTES));
        queued -= piece.byteLength;
        notify();
        if (!(await this.append("b", piece))) throw new HerdlessError("COORDINATOR_UNAVAILABLE", "relay record gone");
      }
      await this.append("e", end ?? "failed:ORIGIN_TRUNCATED");
    } catch (error) {
      // Redis failed us: stop reading (the leader's own clients go on); followers see the record end short.
      end = "failed:COORDINATOR_UNAVAILABLE";
      notify();
      await reader.cancel(error).catch(() => undefined);
      await this.append("e", end).catch(() => false);
    }
    await reading;
  }

  /** Waits for room for the next piece; "full" only once `stopped` says the source failed meanwhile. */
  private async roomFor(stopped: () => boolean): Promise<Room> {
    for (;;) {
      const room = await this.room();
      if (room !== "full" || stopped()) return room;
      await new Promise((resolve) => setTimeout(resolve, ROOM_POLL_MS));
    }
  }
}

/**
 * The first `bytes` of the queued chunks, as one piece. The chunks used up leave the queue in
 * one splice, not one shift each: an origin that flushes each byte as a chunk of its own
 * queues a million of them, and each shift copied all the others (V8 trims only a small array
 * in place), minutes of CPU per MiB.
 */
function take(queue: Uint8Array[], bytes: number): Uint8Array {
  const piece = new Uint8Array(bytes);
  let at = 0;
  let used = 0;
  while (at < bytes) {
    const chunk = queue[used]!;
    const part = Math.min(chunk.byteLength, bytes - at);
    piece.set(chunk.subarray(0, part), at);
    at += part;
    if (part === chunk.byteLength) used += 1;
    else queue[used] = chunk.subarray(part);
  }
  queue.splice(0, used);
  return piece;
}

/** What a follower reads a relayed body with. */
export interface FollowOptions {
  bulk: RedisConnection;
  /**
   * Says where this reader is (the next entry it needs), after reading (`read`: keeps the
   * record alive) or while waiting for more; 0 when the record is gone. PLACE in relay-scripts.ts.
   */
  place: (next: number, read: boolean) => Promise<unknown>;
  /** Hears the appends to the record (a subscription to the channel of the record's name). */
  watch: { subscribed: Promise<boolean>; stop(): void };
  /** Set by the follower: called by `watch` on each append. */
  onAppend: (listener: () => void) => void;
  /** The record's Redis key. */
  stream: string;
}

/**
 * A body read from a relayed record as it grows: pieces in order from entry `0-2`, closed
 * at `complete`, errored at anything else, at a gap, or when the record is gone.
 */
export function followPieces({ bulk, place, watch, onAppend, stream }: FollowOptions): ReadableStream<Uint8Array> {
  let next = 2;
  let wake: (() => void) | undefined;
  onAppend(() => wake?.());
  const stop = () => watch.stop();
  const quietly = () =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, QUIET_MS);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  return new ReadableStream<Uint8Array>(
    {
      start: async () => void (await watch.subscribed),
      pull: (controller) =>
        readPieces(controller).catch((error: unknown) => {
          // A Redis command that failed errors the body: the watch ends with it, not at the record's TTL.
          stop();
          throw error;
        }),
      cancel: stop,
    },
    { highWaterMark: 0 },
  );

  async function readPieces(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    for (;;) {
      // Armed before the read: a piece appended meanwhile wakes the wait that follows.
      const woken = quietly();
      const entries = (await bulk.run("relay read", (client) =>
        client.xrangeBuffer(stream, `0-${next}`, "+", "COUNT", ENTRIES_PER_READ),
      )) as StreamEntry[];
      if (entries.length > 0) {
        wake?.();
        for (const [id, fields] of entries) {
          if (id.toString() !== `0-${next}`) return fail(controller, stop, "a piece of the relayed body is gone");
          next += 1;
          const [field, value] = [fields[0]?.toString(), fields[1]];
          if (field === "b" && value) controller.enqueue(new Uint8Array(value));
          else if (field === "e" && value?.toString() === "complete") return void (stop(), controller.close());
          else return fail(controller, stop, `the relayed body ended: ${value?.toString() ?? "unreadable"}`);
        }
        // Where this reader is: the writer's window moves past what every reader has read,
        // and the record stays alive while it is read.
        void place(next, true).catch(() => 0);
        return;
      }
      await woken;
      wake = undefined;
      // A reader waiting for the next piece is no stalled one: say so while looking.
      if ((await place(next, false)) === 0) return fail(controller, stop, "the relayed body is gone");
    }
  }
}

function fail(controller: ReadableStreamDefaultController<Uint8Array>, stop: () => void, message: string): void {
  stop();
  controller.error(new HerdlessError("ORIGIN_TRUNCATED", message));
}
