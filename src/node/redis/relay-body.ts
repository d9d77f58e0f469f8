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

/** One stream entry as ioredis returns it: id, then field and value pairs. */
export type StreamEntry = [Buffer, Buffer[]];

/**
 * Copies a body into the record piece by piece, reading on while a piece is written (up to
 * a few pieces ahead), so the origin's pace, not Redis's round trips, sets the followers'.
 */
export class PieceWriter {
  constructor(readonly append: (field: "b" | "e", value: Uint8Array | string) => Promise<boolean>) {}

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
        const piece = take(queue, Math.min(queued, PIECE_BYTES));
        queued -= piece.byteLength;
        notify();
        if (!(await this.append("b", piece))) throw new HerdlessError("COORDINATOR_UNAVAILABLE", "relay record gone");
      }
      await this.append("e", end);
    } catch (error) {
      // Redis failed us: stop reading (the leader's own clients go on); followers see the record end short.
      end = "failed:COORDINATOR_UNAVAILABLE";
      notify();
      await reader.cancel(error).catch(() => undefined);
      await this.append("e", end).catch(() => false);
    }
    await reading;
  }
}

/** The first `bytes` of the queued chunks, as one piece. */
function take(queue: Uint8Array[], bytes: number): Uint8Array {
  const piece = new Uint8Array(bytes);
  let at = 0;
  while (at < bytes) {
    const chunk = queue[0]!;
    const part = Math.min(chunk.byteLength, bytes - at);
    piece.set(chunk.subarray(0, part), at);
    at += part;
    if (part === chunk.byteLength) queue.shift();
    else queue[0] = chunk.subarray(part);
  }
  return piece;
}

/** What a follower reads a relayed body with. */
export interface FollowOptions {
  bulk: RedisConnection;
  /** Hears the appends to the record (a subscription to the channel of the record's name). */
  watch: { subscribed: Promise<boolean>; stop(): void };
  /** Set by the follower: called by `watch` on each append. */
  onAppend: (listener: () => void) => void;
  /** The record's Redis key. */
  stream: string;
  ttlMs: number;
}

/**
 * A body read from a relayed record as it grows: pieces in order from entry `0-2`, closed
 * at `complete`, errored at anything else, at a gap, or when the record is gone.
 */
export function followPieces({ bulk, watch, onAppend, stream, ttlMs }: FollowOptions): ReadableStream<Uint8Array> {
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
      pull: async (controller) => {
        for (;;) {
          // Armed before the read: a piece appended meanwhile wakes the wait that follows.
          const woken = quietly();
          const entries = (await bulk.run("relay read", (client) =>
            client.xrangeBuffer(stream, `0-${next}`, "+", "COUNT", ENTRIES_PER_READ),
          )) as StreamEntry[];
          if (entries.length > 0) {
            wake?.();
            // A reader keeps the record alive while it reads it.
            void bulk.run("relay keep", (client) => client.pexpire(stream, ttlMs)).catch(() => 0);
            for (const [id, fields] of entries) {
              if (id.toString() !== `0-${next}`) return fail(controller, stop, "a piece of the relayed body is gone");
              next += 1;
              const [field, value] = [fields[0]?.toString(), fields[1]];
              if (field === "b" && value) controller.enqueue(new Uint8Array(value));
              else if (field === "e" && value?.toString() === "complete") return void (stop(), controller.close());
              else return fail(controller, stop, `the relayed body ended: ${value?.toString() ?? "unreadable"}`);
            }
            return;
          }
          await woken;
          wake = undefined;
          const exists = await bulk.run("relay read", (client) => client.exists(stream));
          if (exists === 0) return fail(controller, stop, "the relayed body is gone");
        }
      },
      cancel: stop,
    },
    { highWaterMark: 0 },
  );
}

function fail(controller: ReadableStreamDefaultController<Uint8Array>, stop: () => void, message: string): void {
  stop();
  controller.error(new HerdlessError("ORIGIN_TRUNCATED", message));
}
