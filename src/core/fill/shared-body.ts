import { HerdlessError } from "../errors.ts";
import { EventLoopTurns, wakeOrTimer } from "../http/event-loop-turns.ts";
import { joined } from "../http/http.ts";
import { FillClaim } from "../store/fill-budget.ts";
import { complete, type CompleteBody } from "./kept-chunks.ts";
import { Laggards, type WatchedReader } from "./laggards.ts";

/** How one shared body ended. */
export type SharedBodyEnd =
  | CompleteBody
  /** Every byte arrived, but the body passed `keepBytes` or the fill budget: it was streamed, not kept. */
  | { kind: "too-large"; bytes: number }
  /** The origin failed mid-body or sent fewer bytes than declared. */
  | { kind: "failed"; error: HerdlessError }
  /** Every reader left a body too large to keep (a visitor closed a video): no failure of the origin's. */
  | { kind: "abandoned"; error: HerdlessError };

export interface SharedBodyOptions {
  /** Bytes kept whole (to store the body, and to give a late reader the prefix). Past this the body is only streamed. */
  keepBytes: number;
  /** Content-Length the origin declared, if any: a body that ends short of it is truncated. */
  declaredBytes?: number;
  /** Bytes read ahead of the slowest reader once the body is no longer kept (default 1 MiB). */
  windowBytes?: number;
  /** How long readers that keep up wait on one that holds the window back (see {@link Laggards}). */
  laggardMs?: number;
  /** What every body kept in this process or isolate may hold together (`cache.fillBudgetBytes`); none when absent. */
  budgetBytes?: number;
}

const DEFAULT_WINDOW_BYTES = 1024 * 1024;
/**
 * Chunks that arrived are shown to readers (published) once this many bytes gathered, or at
 * the next turn of the event loop, whichever comes first: a reader that keeps up would
 * otherwise pass on every few-KB chunk as it came, and each one costs a write per reader on
 * every hop (the object's RPC streams, each edge's client sockets). 50 clients of a 20 MB
 * body in workerd were 250,000 socket writes of 4 KB; the turn bounds the delay a chunk can
 * wait to about a millisecond, so a trickling origin still reaches clients as it sends.
 */
const PUBLISH_BYTES = 64 * 1024;
const READER_LOOKS_AGAIN_MS = 1_000; // a waiting reader looks again by itself ({@link wakeOrTimer})

interface Reader extends WatchedReader {
  /** The turns this reader's pace owes the event loop: a late reader reads a kept body all there. */
  turns: EventLoopTurns;
}

/**
 * One origin body read once and given to many readers as it arrives: the single fetch of a
 * key feeds every request that waits for it, each at its own pace.
 *
 * Contract:
 * - while the body is at most `keepBytes`, every chunk is kept: a reader that joins late
 *   gets the prefix, then the rest, and `ended` gives the whole body to store;
 * - the kept bytes are claimed from the process's fill budget (store/fill-budget.ts): all
 *   at once when the length is declared (a body that does not fit is {@link overBudget}
 *   and kept like one past `keepBytes`), else as they arrive; given back when it ended;
 * - once it passes `keepBytes` or the budget, the kept prefix is dropped, {@link reader} refuses new
 *   readers (they cannot have the start any more), and the origin is read at most
 *   `windowBytes` ahead of the slowest reader, so memory stays bounded whatever the size;
 * - a reader that holds the window back is cut off when it reads nothing for `laggardMs`, or
 *   less than a window in that time while others wait ({@link Laggards}): never a slower one;
 * - a reader's stream closes only after the last byte arrived and the length matched the
 *   declared one; on a failure (origin error, truncation) every reader's stream errors, so a
 *   client sees an aborted body, never a short one that looks complete;
 * - a body still kept is read to its end even after every reader left (it is worth
 *   storing); one past `keepBytes`, or declared so, that nobody reads any more is cancelled.
 *
 * @example
 * const shared = new SharedBody(response.body, { keepBytes: 25 * 2 ** 20, declaredBytes: 1234 });
 * const forClient = shared.reader(); // undefined once the prefix is gone
 * const end = await shared.ended; // { kind: "complete", body } → store it
 */
export class SharedBody {
  /** Chunks from index `base` on; all of them while kept. */
  private chunks: Uint8Array[] = [];
  private base = 0;
  /** Index, in the whole body's chunk sequence, past the last chunk readers may take (see {@link PUBLISH_BYTES}). */
  private published = 0;
  /** Bytes arrived and not yet published. */
  private unpublished = 0;
  /** Set while a publish at the next turn is scheduled. */
  private publishing = false;
  private buffered = 0;
  private total = 0;
  private kept = true;
  /** `options.keepBytes`, or 0 once the budget refused the declared length. */
  private readonly keepBytes: number;
  private readonly claim: FillClaim;
  /** The budget refused the declared length at the start: the body will be streamed, never stored. */
  readonly overBudget: boolean;
  /**
   * The declared length is past `keepBytes`: the body will never be stored, so its prefix is
   * kept for readers that join, never read on for nobody.
   */
  private readonly tooLarge: boolean;
  private finished: SharedBodyEnd | undefined;
  /** Set when the source was cancelled because nobody reads it: its end is not the body's. */
  private abandoned = false;
  /** Set by {@link abort}. */
  private stopped: HerdlessError | undefined;
  private readonly readers = new Set<Reader>();
  /** Resolves the pump's wait for a slow reader or a new chunk to be read. */
  private resume: (() => void) | undefined;
  private readonly source: ReadableStreamDefaultReader<Uint8Array>;
  private readonly windowBytes: number;
  private blocked = false; // while the pump waits for the slowest reader to make room
  private readonly laggards: Laggards;
  /** Settles once the body ended, however; never rejects. */
  readonly ended: Promise<SharedBodyEnd>;

  constructor(
    source: ReadableStream<Uint8Array> | null,
    private readonly options: SharedBodyOptions,
  ) {
    this.windowBytes = options.windowBytes ?? DEFAULT_WINDOW_BYTES;
    this.claim = new FillClaim(options.budgetBytes ?? Number.POSITIVE_INFINITY);
    const declared = options.declaredBytes;
    // The whole declared length at once: two bodies that each fit half-way never both fail late.
    this.overBudget = declared !== undefined && declared <= options.keepBytes && !this.claim.cover(declared);
    this.keepBytes = this.overBudget ? 0 : options.keepBytes;
    this.tooLarge = declared !== undefined && declared > options.keepBytes;
    this.laggards = new Laggards(options.laggardMs, {
      readers: () => this.readers,
      blocked: () => this.blocked && !this.finished,
      cut: (reader) => this.leave(reader as Reader),
      windowBytes: this.windowBytes,
    });
    this.source = (source ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() })).getReader();
    this.ended = this.pump();
  }

  /** Bytes received so far. */
  get receivedBytes(): number {
    return this.total;
  }

  /** A stream of the whole body for one more reader; undefined once its start is gone (past `keepBytes`) or it failed. */
  reader(): ReadableStream<Uint8Array> | undefined {
    if (!this.kept || this.abandoned || this.finished?.kind === "failed") return undefined;
    let self: Reader | undefined;
    return new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          self = { next: 0, readBytes: 0, turns: new EventLoopTurns(), controller };
          this.readers.add(self);
        },
        pull: async () => {
          const reader = Object.assign(self!, { stalled: false }); // it reads: not stalled
          for (;;) {
            const index = reader.next - this.base;
            if (reader.next < this.published) {
              const { chunk, count } = joined(this.chunks, index, this.published - this.base);
              reader.next += count;
              reader.readBytes += chunk.byteLength;
              reader.controller.enqueue(chunk);
              this.trim();
              await reader.turns.passed(chunk.byteLength);
              return;
            }
            if (this.finished) return this.finish(reader);
            reader.lagging = false; // caught up: it holds nobody back, and a laggard may hold it back
            await wakeOrTimer((wake) => {
              reader.wake = wake;
              this.laggards.watch();
            }, READER_LOOKS_AGAIN_MS);
            reader.wake = undefined;
          }
        },
        cancel: () => {
          if (self) this.leave(self);
        },
      },
      // Pull one chunk at a time: the reader's pace is the consumer's.
      { highWaterMark: 0 },
    );
  }

  /** Stops the body (the right to store it was lost): every reader's stream errors with `error`. */
  abort(error: HerdlessError): void {
    if (this.finished || this.stopped) return;
    this.stopped = error;
    void this.source.cancel(error).catch(() => undefined);
  }

  private finish(reader: Reader): void {
    this.readers.delete(reader);
    if (this.finished && "error" in this.finished) reader.controller.error(this.finished.error);
    else reader.controller.close();
  }

  private leave(reader: Reader): void {
    this.readers.delete(reader);
    this.trim();
    // A body past keepBytes, or declared so, is not worth reading for nobody: read on, a client
    // that asked for a 64 MiB file and hung up at once cost the origin its first 25 MiB.
    if ((!this.kept || this.tooLarge) && this.readers.size === 0 && !this.finished) {
      this.abandoned = true;
      void this.source.cancel(new Error("every reader left")).catch(() => undefined);
    }
  }

  /**
   * Once the body is no longer kept, drops the chunks every reader has had: in one splice, not
   * one shift each, which copied all the others once the array was large (V8 trims only a small
   * one in place): a body flushed in small chunks (an export row by row) that passed keepBytes
   * held tens of thousands of them, and dropping them cost seconds of CPU.
   */
  private trim(): void {
    if (this.kept) return;
    let lowest = this.base + this.chunks.length;
    for (const reader of this.readers) lowest = Math.min(lowest, reader.next);
    if (this.base < lowest) {
      for (const chunk of this.chunks.splice(0, lowest - this.base)) this.buffered -= chunk.byteLength;
      this.base = lowest;
    }
    this.resume?.();
  }

  private async pump(): Promise<SharedBodyEnd> {
    let end: SharedBodyEnd;
    const turns = new EventLoopTurns();
    try {
      for (;;) {
        // Past keepBytes the origin is read only as fast as the slowest reader.
        while (!this.kept && this.buffered > this.windowBytes && this.readers.size > 0) {
          this.blocked = true;
          this.laggards.watch();
          await new Promise<void>((resolve) => (this.resume = resolve));
          this.resume = undefined;
          this.blocked = false;
        }
        const { done, value } = await this.source.read();
        if (this.stopped) throw this.stopped;
        if (this.abandoned) throw new Error("every reader left");
        if (done) break;
        this.chunks.push(value);
        this.buffered += value.byteLength;
        this.total += value.byteLength;
        this.unpublished += value.byteLength;
        if (this.kept && (this.total > this.keepBytes || !this.claim.cover(this.total))) {
          this.kept = false;
          this.claim.release();
          this.trim();
        }
        if (this.unpublished >= PUBLISH_BYTES) this.publish();
        else this.publishSoon();
        if (!this.kept && this.readers.size === 0) throw new Error("every reader left");
        await turns.passed(value.byteLength);
      }
      const declared = this.options.declaredBytes;
      if (declared !== undefined && declared !== this.total) {
        throw new HerdlessError("ORIGIN_TRUNCATED", `origin sent ${this.total} of ${declared} declared bytes`);
      }
      end = this.kept ? complete(this.chunks, this.total) : { kind: "too-large", bytes: this.total };
    } catch (cause) {
      const error =
        cause instanceof HerdlessError
          ? cause
          : new HerdlessError("ORIGIN_TRUNCATED", `origin body ended early after ${this.total} bytes`, { cause });
      void this.source.cancel(error).catch(() => undefined);
      const gone = !this.stopped && (this.abandoned || (!this.kept && this.readers.size === 0));
      end = gone ? { kind: "abandoned", error } : { kind: "failed", error };
      this.chunks = [];
      this.buffered = 0;
    }
    this.finished = end;
    // The bytes are stored (the entry's charge now), dropped, or left to readers of a stored copy.
    this.claim.release();
    this.laggards.stop();
    this.publish();
    return end;
  }

  /** Publishes at the next turn of the event loop what arrived until then (see {@link PUBLISH_BYTES}). */
  private publishSoon(): void {
    if (this.publishing) return;
    this.publishing = true;
    setTimeout(() => {
      this.publishing = false;
      if (this.unpublished > 0) this.publish();
    }, 0);
  }

  /** Lets readers take every chunk arrived so far, and wakes those waiting for one. */
  private publish(): void {
    this.published = this.base + this.chunks.length;
    this.unpublished = 0;
    this.wakeReaders();
  }

  private wakeReaders(): void {
    for (const reader of this.readers) {
      const wake = reader.wake;
      reader.wake = undefined;
      wake?.();
    }
  }
}
