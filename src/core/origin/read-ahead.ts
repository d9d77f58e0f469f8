import type { Config } from "../config.ts";
import type { Timers } from "../guard/local-guard.ts";
import { joined, ORIGIN_JOIN_BYTES } from "../http/http.ts";

/**
 * Bytes read from origins ahead of their clients and not yet taken by them, every response of
 * this process (or Worker isolate) together: what `origin.readAheadBudgetBytes` bounds.
 */
let heldBytes = 0;

/** Bytes the read-aheads of this process or isolate hold now (for tests and metrics). */
export function readAheadHeldBytes(): number {
  return heldBytes;
}

/**
 * The least a client that holds its origin permit back must move per
 * `origin.streamIdleTimeoutMs` while callers queue for one (see {@link holdingPaceBytes}),
 * even with the read-ahead off: the window a shared body asks of a reader that holds the
 * others back (laggards.ts).
 */
const MIN_HOLDING_PACE_BYTES = 1024 * 1024;

/**
 * What a client that holds the origin back (a download past its read-ahead, an upload past
 * what was read before its permit) must move per `origin.streamIdleTimeoutMs` while callers
 * queue for a permit: what herdless buffers for it, at least {@link MIN_HOLDING_PACE_BYTES}.
 * A slower one keeps the origin connection waiting longer than herdless lets an origin keep a
 * client waiting, on a permit another needs.
 */
export function holdingPaceBytes(bufferedBytes: number): number {
  return Math.max(bufferedBytes, MIN_HOLDING_PACE_BYTES);
}

/** A client that may hold its origin permit back: the bytes it moved so far, and the pace it owes. */
export interface HolderPace {
  /** Bytes the client took (a download) or sent (an upload) so far. */
  readonly takenBytes: number;
  /** What it must move per `origin.streamIdleTimeoutMs` while callers queue ({@link holdingPaceBytes}). */
  readonly paceBytes: number;
}

/** What a chunk the client took is replaced with until the array moves down. */
const TAKEN = new Uint8Array(0);

/**
 * The chunks of one origin body read ahead of its client, charged to the process-wide budget
 * as they arrive and given back as the client takes them (or leaves: {@link clear}).
 *
 * A response may read one more chunk while it holds less than `origin.readAheadBytes` and the
 * process holds less than `origin.readAheadBudgetBytes` (each passed by at most one chunk);
 * otherwise it reads only as its client does (backpressure), as before there was a read-ahead.
 *
 * @example
 * const ahead = new AheadQueue(config);
 * if (ahead.hasRoom()) ahead.push(await read());
 * const next = ahead.shift(); // for the client, all that was read joined; its bytes go back to the budget
 */
export class AheadQueue implements HolderPace {
  // Taken from `head` on, not shifted off the front: an origin that flushes each byte as a
  // chunk of its own fills a read-ahead with millions of them, and each shift copied all the
  // others once the array was large (V8 trims only a small one in place): seconds of CPU per
  // 64 KiB, the client's download stalled behind it.
  private chunks: Uint8Array[] = [];
  private head = 0;
  private queuedBytes = 0;
  /** Bytes the client took so far: its pace. */
  takenBytes = 0;
  private readonly perResponseBytes: number;
  private readonly budgetBytes: number;
  /** A read-ahead's worth (136 KiB/s with the defaults): see {@link holdingPaceBytes}. */
  readonly paceBytes: number;

  constructor(config: Config) {
    this.perResponseBytes = config.origin.readAheadBytes;
    this.budgetBytes = config.origin.readAheadBudgetBytes;
    this.paceBytes = holdingPaceBytes(this.perResponseBytes);
  }

  get empty(): boolean {
    return this.head === this.chunks.length;
  }

  /** Whether one more chunk may be read before the client asks for it. */
  hasRoom(): boolean {
    return this.queuedBytes < this.perResponseBytes && heldBytes < this.budgetBytes;
  }

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.queuedBytes += chunk.byteLength;
    heldBytes += chunk.byteLength;
  }

  /**
   * What the client gets next, its bytes given back to the budget: every chunk read ahead,
   * joined (http.ts {@link joined}; a chunk alone passes as it is, at once). An origin that
   * flushes each byte as a chunk of its own otherwise cost a round trip per byte through every
   * stream behind this one: in workerd, ~75 µs of CPU each across the key's object, RPC and the edge.
   */
  shift(): Uint8Array | undefined {
    if (this.empty) return undefined;
    const { chunk, count } = joined(this.chunks, this.head, this.chunks.length, ORIGIN_JOIN_BYTES);
    this.chunks.fill(TAKEN, this.head, (this.head += count));
    // Once the chunks taken are half the array, the rest move down: each move is paid for by
    // as many takes, so a chunk costs a constant share however many there are.
    if (this.head === this.chunks.length || (this.head >= 1024 && this.head * 2 >= this.chunks.length)) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
    this.queuedBytes -= chunk.byteLength;
    heldBytes -= chunk.byteLength;
    this.takenBytes += chunk.byteLength;
    return chunk;
  }

  /** Drops what the client will never take (it left, or the body failed): the budget gets it back. */
  clear(): void {
    heldBytes -= this.queuedBytes;
    this.queuedBytes = 0;
    this.chunks = [];
    this.head = 0;
  }
}

/**
 * Watches a client that holds its origin permit back (a download's read-ahead is full, an
 * upload's origin waits for its next bytes): from when it starts to, it must move its
 * `paceBytes` per `origin.streamIdleTimeoutMs`, or it is cut off when `contended` says
 * callers queue for a permit. The pace is looked at
 * every half `origin.queueTimeoutMs` (at most every `streamIdleTimeoutMs`): looked at only
 * every 30 s, a visitor queued behind a trickler waited past its 10 s and got its `503` two
 * times in three. The measure starts afresh every `streamIdleTimeoutMs`, and whenever the
 * origin is the one holding things up ({@link stop}).
 *
 * @example
 * const holding = new HoldingWatch(timers, config, ahead, contended, () => cutOff());
 * holding.watch(); // the origin waits on the client
 * holding.stop(); // the client waits on the origin
 */
export class HoldingWatch {
  private timer: unknown;
  /** Bytes the client had moved when the measure started, and the time since then. */
  private from = 0;
  private elapsedMs = 0;
  private measuring = false;
  private readonly idleMs: number;
  private readonly lookMs: number;

  constructor(
    private readonly timers: Timers,
    config: Config,
    private readonly ahead: HolderPace,
    private readonly contended: (() => Promise<boolean>) | undefined,
    private readonly cut: () => void,
  ) {
    const { streamIdleTimeoutMs, queueTimeoutMs } = config.origin;
    this.idleMs = streamIdleTimeoutMs;
    this.lookMs = Math.max(1, Math.min(streamIdleTimeoutMs, Math.floor(queueTimeoutMs / 2) || streamIdleTimeoutMs));
  }

  watch(): void {
    if (this.timer !== undefined || !this.contended) return;
    if (!this.measuring) this.restart();
    this.timer = this.timers.setTimeout(() => void this.judge(), this.lookMs);
  }

  stop(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.measuring = false;
  }

  private restart(): void {
    this.measuring = true;
    this.from = this.ahead.takenBytes;
    this.elapsedMs = 0;
  }

  private async judge(): Promise<void> {
    const armed = this.timer;
    this.elapsedMs += this.lookMs;
    // Less than paceBytes per idleMs, over the time it held the origin back.
    const slow = (this.ahead.takenBytes - this.from) * this.idleMs < this.ahead.paceBytes * this.elapsedMs;
    if (slow && (await this.contended!().catch(() => false)) && this.timer === armed) return this.cut();
    if (this.timer !== armed) return; // stopped meanwhile
    if (this.elapsedMs >= this.idleMs) this.restart();
    this.timer = undefined;
    this.watch();
  }
}
