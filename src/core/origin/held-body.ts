import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import { HerdlessError } from "../errors.ts";
import type { Timers } from "../guard/local-guard.ts";
import { EventLoopTurns } from "../http/event-loop-turns.ts";
import { brokenOff, capped, lostPermit, tooSlow } from "./origin-error.ts";
import { AheadQueue, HoldingWatch } from "./read-ahead.ts";

/** How a streamed body ended, for its permit's release. */
export type StreamEnding = "ended" | "failed" | "lost";

/** What {@link holdUntilDone} needs besides the body. */
export interface HeldBodyOptions {
  /** Content-Length the origin declared, if any. */
  declaredBytes: number | undefined;
  /** A server-sent event stream: `origin.streamTimeoutMs` and `streamIdleTimeoutMs` end it as herdless's caps, not the origin's failure. */
  live?: boolean;
  config: Config;
  timers: Timers;
  /** Read as each chunk arrives: the overall deadline holds even while no timer can fire. */
  clock: Clock;
  url: string;
  /** Called once, when the origin's part is over: the permit goes back. */
  done: (ending: StreamEnding) => void;
  /** Aborts once the permit is lost (see OriginPermit.lost). */
  lost: AbortSignal | undefined;
  /** Whether callers wait for an origin permit now; absent: a slow client is never cut for holding one. */
  contended?: () => Promise<boolean>;
}

/**
 * Wraps a streamed origin body so the permit goes back exactly once, when the origin's body
 * ends (`done("ended")`), fails or stalls (`done("failed")`), its permit is lost
 * (`done("lost")`: the breaker learns nothing from it), or its reader cancels it while the
 * origin is still read (`done("ended")`, once the origin body is cancelled: the origin
 * answered; the client left). Idle time counts only while waiting on the origin; the overall
 * deadline (`origin.streamTimeoutMs`) counts from the head until the client has the last byte.
 *
 * The origin is read ahead of the client, at the origin's pace, up to `origin.readAheadBytes`
 * while the process or isolate holds less than `origin.readAheadBudgetBytes` of such bytes
 * (read-ahead.ts), as nginx's `proxy_buffering` does: a body that fits is read to its end and
 * its permit and origin connection freed when the origin finishes, not when the client does.
 * A client that trickled a relayed body held its permit for `origin.streamTimeoutMs`, and
 * `origin.maxConcurrency` of them refused every visitor's cold miss. Past the read-ahead the
 * origin is read as the client reads; such a client that holds its permit while callers queue
 * for one, reading less than a read-ahead's worth in `origin.streamIdleTimeoutMs` (136 KiB/s
 * with the defaults), is cut off (CLIENT_TOO_SLOW): the cap is there to keep the origin
 * working for every visitor, and a connection the origin spends waiting on one slow download
 * while cold pages queue (then `503`) is the cap turned against them; a CDN operator expects
 * the page served and the download (a retry, a range) to pay. A slow client nobody waits
 * behind goes on at its pace, as before, until `origin.streamTimeoutMs`.
 *
 * A body that has delivered all its `declaredBytes` ends there, without waiting for a
 * further read: workerd stops reading a body of known length once it has that many bytes,
 * so the end would otherwise never be seen and the permit would be held until
 * `origin.streamTimeoutMs` (every relayed POST or PUT on the Worker starved the cap).
 *
 * @example
 * const held = holdUntilDone(response.body, { declaredBytes, config, timers, clock, url, done: (e) => permit.release(…), lost });
 */
export function holdUntilDone(body: ReadableStream<Uint8Array>, o: HeldBodyOptions): ReadableStream<Uint8Array> {
  return new HeldBody(body, o).stream;
}

/** One streamed origin body, its read-ahead and its permit: see {@link holdUntilDone}. */
class HeldBody {
  readonly stream: ReadableStream<Uint8Array>;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly ahead: AheadQueue;
  private readonly holding: HoldingWatch;
  private readonly overall: unknown;
  /** When `origin.streamTimeoutMs` runs out, by the clock. */
  private readonly deadlineAt: number;
  private readonly unlisten: () => void;
  private readonly idleMs: number;
  private released = false; // the origin's part is over: its permit went back
  private originEnded = false; // every byte of the origin's body is in `ahead` or was taken
  private closed = false; // the client's stream is over
  private cancelling = false;
  private readBytes = 0;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private wakePump: (() => void) | undefined;
  private wakeClient: (() => void) | undefined;
  private clientWaits = false;
  /**
   * The client was handed bytes in this turn of the event loop: what arrives before the turn
   * ends waits for it, joined ({@link AheadQueue.shift}). An origin that flushes each byte as
   * it comes otherwise reached a client that was always waiting a byte at a time, however
   * fast they came: in workerd a promise round trip, an RPC message from the key's object and
   * a write to the visitor's socket each, ~75 µs of CPU per byte. A chunk that comes alone
   * (an event stream's event, after a quiet turn) is handed on at once.
   */
  private turnEnd: ReturnType<typeof setTimeout> | undefined;
  /** Set once the origin's part failed: the client gets it after the bytes read before it. */
  private failure: HerdlessError | undefined;
  // Between always-ready sockets either side would hold the isolate's other requests till its end.
  private readonly pumpTurns = new EventLoopTurns();
  private readonly clientTurns = new EventLoopTurns();

  constructor(
    body: ReadableStream<Uint8Array>,
    private readonly o: HeldBodyOptions,
  ) {
    const { streamIdleTimeoutMs, streamTimeoutMs } = o.config.origin;
    this.idleMs = streamIdleTimeoutMs;
    this.reader = body.getReader();
    this.ahead = new AheadQueue(o.config);
    this.overall = o.timers.setTimeout(() => this.tooLong(streamTimeoutMs), streamTimeoutMs);
    this.deadlineAt = o.clock.now() + streamTimeoutMs;
    // The slot may be given to another once the permit is lost: the origin body stops here.
    this.unlisten = whenAborted(o.lost, () => this.stop(lostPermit(o.lost?.reason, o.url), "lost"));
    this.holding = new HoldingWatch(o.timers, o.config, this.ahead, o.contended, () => this.cutHolder());
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => void (this.controller = c),
        pull: (c) => this.pull(c),
        cancel: (reason) => this.leave(reason),
      },
      // The client's pace is its reads: what runs ahead is in `ahead`, counted against the budget.
      { highWaterMark: 0 },
    );
    void this.pump();
  }

  private release(ending: StreamEnding): boolean {
    if (this.released) return false;
    this.released = true;
    this.unlisten();
    this.o.done(ending);
    return true;
  }

  private close(): boolean {
    if (this.closed) return false;
    this.closed = true;
    this.o.timers.clearTimeout(this.overall);
    if (this.turnEnd !== undefined) clearTimeout(this.turnEnd);
    this.holding.stop();
    this.ahead.clear();
    this.wakePump?.();
    this.wakeClient?.();
    return true;
  }

  /**
   * The origin's part failed (or its permit was lost): the client still gets the bytes read
   * before it, then the error, as it would have without a read-ahead (a broken-off answer
   * shows its head and those bytes, never an empty reply); the overall deadline still bounds
   * a client that takes them slowly. `now`: at once, the bytes dropped (the deadline itself).
   */
  private stop(error: HerdlessError, ending: StreamEnding = "failed", now = false): void {
    if (this.release(ending)) void this.reader.cancel(error).catch(() => undefined);
    this.failure ??= error;
    if ((now || this.ahead.empty) && this.close()) this.controller.error(error);
  }

  /**
   * The client left, or was cut off. The slot frees once the origin body is torn down, not
   * before: otherwise the next caller's request reaches the origin while this connection is still open.
   */
  private async leave(reason: unknown): Promise<void> {
    this.cancelling = true;
    this.close();
    if (this.released) return;
    // An origin body that already failed rejects the cancel with its error: the client is gone,
    // and nobody is left to hear it (unheard, it was an unhandled rejection).
    await this.reader.cancel(reason).catch(() => undefined);
    this.release("ended");
  }

  private tooLong(streamTimeoutMs: number): void {
    const how = `took longer than ${streamTimeoutMs} ms`;
    // An event stream runs as long as its page is open: ending it at the cap is herdless's doing
    // (the breaker learns nothing, the key does not back off; EventSource reconnects). Counted as
    // a timeout, the reconnect got a 503 (backoff), and an EventSource gives up on any non-200.
    if (!this.released && this.o.live) return this.stop(capped(this.o.url, how), "lost", true);
    if (!this.released) return this.stop(tooSlow(this.o.url, how), "failed", true);
    // The origin was done long ago: the client is the slow one, and the breaker learns nothing.
    if (this.close())
      this.controller.error(new HerdlessError("CLIENT_TOO_SLOW", `the client of ${this.o.url} ${how} to read it`));
  }

  /** The origin sent nothing for `origin.streamIdleTimeoutMs`: an event stream's silence between events is no sickness. */
  private stalled(): void {
    const how = `stalled for ${this.idleMs} ms`;
    if (this.o.live) this.stop(capped(this.o.url, how), "lost");
    else this.stop(tooSlow(this.o.url, how));
  }

  private cutHolder(): void {
    if (this.released || this.closed) return;
    const message =
      `the client of ${this.o.url} read less than ${this.ahead.paceBytes} bytes per ${this.idleMs} ms ` +
      "while it held an origin permit others waited for; it was cut off";
    this.controller.error(new HerdlessError("CLIENT_TOO_SLOW", message));
    void this.leave(new Error("client too slow"));
  }

  private originDone(): void {
    this.originEnded = true;
    this.release("ended");
    this.wakeClient?.();
  }

  private async pump(): Promise<void> {
    const { timers, url, declaredBytes } = this.o;
    while (!this.released && !this.closed) {
      if (!this.ahead.hasRoom() && !this.clientWaits) {
        // The client holds the origin back: past the read-ahead it is read at the client's pace.
        this.holding.watch();
        await new Promise<void>((resolve) => (this.wakePump = resolve));
        this.wakePump = undefined;
        continue;
      }
      let read: ReadableStreamReadResult<Uint8Array>;
      try {
        read = await readOrStall(this.reader, timers, this.idleMs, () => this.stalled());
      } catch (error) {
        if (!this.cancelling) this.stop(brokenOff(error, url));
        return;
      }
      // A cancel ends a pending read at once; `leave` frees the slot once the origin body is torn down.
      if (this.released || this.cancelling) return;
      if (read.done) return this.originDone();
      // Not by the timer alone: workerd fires none while a body's reads keep resolving.
      if (this.o.clock.now() >= this.deadlineAt) return this.tooLong(this.o.config.origin.streamTimeoutMs);
      this.ahead.push(read.value);
      this.readBytes += read.value.byteLength;
      if (this.turnEnd === undefined) this.wakeClient?.();
      // All the declared bytes are here: the origin's body is complete (a longer one is the
      // origin's error, cut off by the runtime as it is without herdless).
      if (declaredBytes !== undefined && this.readBytes >= declaredBytes) {
        this.originDone();
        void this.reader.cancel().catch(() => undefined);
        return;
      }
      await this.pumpTurns.passed(read.value.byteLength);
    }
  }

  private async pull(c: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    while (!this.closed) {
      const chunk = this.ahead.shift();
      if (chunk) {
        c.enqueue(chunk);
        // The runtime's own timer, not the caller's: a turn's end is the event loop's, never a deadline.
        this.turnEnd ??= setTimeout(() => {
          this.turnEnd = undefined;
          this.wakeClient?.();
        }, 0);
        this.wakePump?.();
        await this.clientTurns.passed(chunk.byteLength);
        return;
      }
      if (this.failure) {
        if (this.close()) c.error(this.failure);
        return;
      }
      if (this.originEnded) {
        this.close();
        c.close();
        return;
      }
      // The client waits for the origin: it holds nothing back.
      this.holding.stop();
      this.clientWaits = true;
      this.wakePump?.();
      await new Promise<void>((resolve) => (this.wakeClient = resolve));
      this.wakeClient = undefined;
      this.clientWaits = false;
    }
  }
}

/**
 * The next read of `reader`; `stall` runs if the origin sends nothing for `idleMs` (idle time
 * counts only while waiting on the origin). A stopped body's pending read ends at once with
 * its cancel, and its timer with it.
 */
async function readOrStall(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  timers: Timers,
  idleMs: number,
  stall: () => void,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  const idle = timers.setTimeout(stall, idleMs);
  try {
    return await reader.read();
  } finally {
    timers.clearTimeout(idle);
  }
}

/** Calls `fn` once `signal` aborts (at once if it has); returns what stops listening. */
function whenAborted(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (!signal) return () => undefined;
  signal.addEventListener("abort", fn, { once: true });
  if (signal.aborted) queueMicrotask(fn);
  return () => signal.removeEventListener("abort", fn);
}
