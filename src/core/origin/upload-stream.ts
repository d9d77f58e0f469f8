import type { Config } from "../config.ts";
import { HerdlessError } from "../errors.ts";
import { concatBytes } from "../http/http.ts";
import type { Timers } from "../guard/local-guard.ts";
import { holdingPaceBytes, HoldingWatch, type HolderPace } from "./read-ahead.ts";
import { freeUploadBytes, holdUploadBytes, uploadBudgetSpent } from "./upload-budget.ts";

/** What cuts a streamed upload that holds its origin permit back while others queue for one. */
export interface UploadWatch {
  config: Config;
  timers: Timers;
  /** Whether callers wait for an origin permit now. */
  contended: () => Promise<boolean>;
  /** The URL the upload goes to, for the message. */
  url: string;
  /**
   * The Content-Length its client declared, if any: a body that ends at another length is a
   * broken one, never passed on as whole (a runtime's own framing checks it on the wire; a
   * Request made in code, through a service binding or by a library's caller, is not checked).
   */
  declaredBytes?: number | undefined;
}

/** Why a body that came to `bytes` is broken: its client declared another length. */
export function misframed(bytes: number, declared: number | undefined): string {
  return `the request body came to ${bytes} bytes, not the ${declared} its Content-Length declares`;
}

/**
 * A client's body streamed to the origin: the chunks read before the permit, then the rest,
 * read from the client up to `roomBytes` ahead of the origin (charged to the upload budget,
 * upload-budget.ts; past the budget one chunk at most).
 *
 * Once its origin call holds a permit, the origin waits on the client whenever it wants the
 * next bytes and none are in: the client holds the permit back. Such a client is judged as a
 * download's reader past its read-ahead is ({@link HoldingWatch}): one that sends less than
 * {@link holdingPaceBytes} of `roomBytes` (1 MiB) per `origin.streamIdleTimeoutMs` while callers
 * queue for a permit is cut off, its body errors with CLIENT_TOO_SLOW, and its client gets `408`
 * (the origin call ends while the body is still pending: guarded-call.ts). The measure starts
 * afresh whenever the client is ahead (the origin has not taken what it sent): the origin is
 * then the slow one. Without a queue behind it a slow upload goes on until `origin.timeoutMs`.
 * Before, four POSTs that sent 64 KiB and stopped held the four permits of
 * `maxConcurrency: 4` until `origin.timeoutMs`, and a visitor's cold miss got `503`.
 *
 * @example
 * const upload = new StreamedUpload(chunks, reader, 64 * 1024, watch);
 * await fetch(url, { method: "POST", body: upload.stream });
 * upload.release(); // the origin call is over: nothing more is watched or charged
 */
export class StreamedUpload implements HolderPace {
  readonly stream: ReadableStream<Uint8Array>;
  readonly paceBytes: number;
  /** Bytes the client has sent so far: its pace. */
  takenBytes = 0;
  private chunks: Uint8Array[] = [];
  private queuedBytes = 0;
  /** Its queued bytes count against the budget (until the origin call is over). */
  private charged = true;
  private clientEnded = false;
  private closed = false;
  private failure: Error | undefined;
  private cutError: HerdlessError | undefined;
  private originWaits = false;
  private wakeOrigin: (() => void) | undefined;
  private wakePump: (() => void) | undefined;
  private holding: HoldingWatch | undefined;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private readonly stopping = new AbortController();
  /**
   * Aborts once the client's body failed or was cut, before the body stream errors: the origin
   * call is stopped, so the origin never reads a cut body as complete. workerd ends a chunked
   * request body cleanly when its stream errors, and the origin answered 200 to the first
   * 64 KiB of an upload as if it were all of it.
   */
  readonly signal = this.stopping.signal;

  /** `chunks`: read before the permit, and already charged to the budget. */
  constructor(
    chunks: Uint8Array[],
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly roomBytes: number,
    private readonly watch?: UploadWatch,
  ) {
    for (const chunk of chunks) this.queue(chunk, false);
    this.paceBytes = holdingPaceBytes(roomBytes);
    if (watch) this.holding = new HoldingWatch(watch.timers, watch.config, this, watch.contended, () => this.cut());
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => void (this.controller = c),
        pull: (c) => this.pull(c),
        cancel: (reason) => this.cancel(reason),
      },
      // The origin's pace is its reads: what runs ahead is in `chunks`, counted against the budget.
      { highWaterMark: 0 },
    );
    void this.pump();
  }

  /** True until the client has sent its last byte (a cancel by our side is no end of its body). */
  pending(): boolean {
    return !this.clientEnded;
  }

  /** Why herdless cut the client off ({@link HoldingWatch}), if it did: what its client is told. */
  cutOff(): HerdlessError | undefined {
    return this.cutError;
  }

  /** The origin call is over: the client is watched no more, and what it holds leaves the budget. */
  release(): void {
    this.holding?.stop();
    this.holding = undefined;
    if (this.charged) freeUploadBytes(this.queuedBytes);
    this.charged = false;
  }

  /** Whether one more chunk may be read from the client before the origin asks for it. */
  private hasRoom(): boolean {
    if (this.queuedBytes === 0) return true;
    return this.queuedBytes < this.roomBytes && !(this.charged && uploadBudgetSpent());
  }

  private queue(chunk: Uint8Array, charge: boolean): void {
    this.chunks.push(chunk);
    this.queuedBytes += chunk.byteLength;
    this.takenBytes += chunk.byteLength;
    if (charge && this.charged) holdUploadBytes(chunk.byteLength);
  }

  /**
   * Everything queued, as one chunk. Taken one chunk at a time, a body sent as 200,000 chunks
   * of one byte (1.2 MB on the wire) queued up to a million of them: each `shift` of so long an
   * array moves all the rest (quadratic: ~6.5 s of CPU per such upload, measured, and the
   * origin call timed out), and each was one write, one chunk, to the origin.
   */
  private takeAll(): Uint8Array | undefined {
    if (this.queuedBytes === 0) return undefined;
    const taken =
      this.chunks.length === 1 ? (this.chunks[0] as Uint8Array) : concatBytes(this.chunks, this.queuedBytes);
    if (this.charged) freeUploadBytes(this.queuedBytes);
    this.chunks = [];
    this.queuedBytes = 0;
    return taken;
  }

  private close(): boolean {
    if (this.closed) return false;
    this.closed = true;
    this.holding?.stop();
    if (this.charged) freeUploadBytes(this.queuedBytes);
    this.chunks = [];
    this.queuedBytes = 0;
    this.wakePump?.();
    this.wakeOrigin?.();
    return true;
  }

  private async pump(): Promise<void> {
    while (!this.closed) {
      if (!this.hasRoom()) {
        // The client is ahead, the origin has not taken what it sent: the origin is the slow one.
        if (!this.originWaits) this.holding?.stop();
        await new Promise<void>((resolve) => (this.wakePump = resolve));
        this.wakePump = undefined;
        continue;
      }
      let read: ReadableStreamReadResult<Uint8Array>;
      try {
        read = await this.reader.read();
      } catch (error) {
        // The client left, or its framing broke: the origin gets the error after what came before.
        this.failure = error instanceof Error ? error : new Error(String(error));
        this.stopping.abort(this.failure);
        this.wakeOrigin?.();
        return;
      }
      // A cancel ends a pending read at once (as done): no end of the client's body.
      if (this.closed) return;
      if (read.done && this.takenBytes !== (this.watch?.declaredBytes ?? this.takenBytes)) {
        this.failure = new Error(misframed(this.takenBytes, this.watch?.declaredBytes));
        this.stopping.abort(this.failure);
        this.wakeOrigin?.();
        return;
      }
      if (read.done) {
        this.clientEnded = true;
        this.holding?.stop();
        this.wakeOrigin?.();
        return;
      }
      if (read.value.byteLength > 0) this.queue(read.value, true);
      this.wakeOrigin?.();
    }
  }

  private async pull(c: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    while (!this.closed) {
      const chunk = this.takeAll();
      if (chunk) {
        c.enqueue(chunk);
        this.wakePump?.();
        return;
      }
      if (this.failure) {
        if (this.close()) c.error(this.failure);
        return;
      }
      if (this.clientEnded) {
        this.close();
        c.close();
        return;
      }
      // The origin waits on the client: the client holds its permit back.
      this.holding?.watch();
      this.originWaits = true;
      this.wakePump?.();
      await new Promise<void>((resolve) => (this.wakeOrigin = resolve));
      this.wakeOrigin = undefined;
      this.originWaits = false;
    }
  }

  /** The origin call stopped reading (it failed, or ended): the client's body is let go. */
  private async cancel(reason: unknown): Promise<void> {
    this.close();
    await this.reader.cancel(reason).catch(() => undefined);
  }

  private cut(): void {
    if (this.closed || !this.watch) return;
    const { url, config } = this.watch;
    const message =
      `the client of ${url} sent less than ${this.paceBytes} bytes of its body per ` +
      `${config.origin.streamIdleTimeoutMs} ms while it held an origin permit others waited for; it was cut off`;
    const error = new HerdlessError("CLIENT_TOO_SLOW", message);
    this.cutError = error;
    this.stopping.abort(error);
    this.close();
    this.controller.error(error);
    void this.reader.cancel(error).catch(() => undefined);
  }
}
