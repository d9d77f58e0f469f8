import type { Config } from "../config.ts";
import { HerdlessError } from "../errors.ts";
import { fillBudgetBytes } from "../store/fill-budget.ts";

/** What a deployment's config sets of every shared body: how much is kept, how long a laggard is waited on. */
export interface SharedBodyLimits {
  /** Bytes kept whole (to store the body, and to give a late reader the prefix). */
  keepBytes: number;
  /** How long readers that keep up wait on one that holds the window back before it is cut off. */
  laggardMs: number;
  /** What every body kept in this process or isolate may hold together (`cache.fillBudgetBytes`). */
  budgetBytes: number;
}

/**
 * The shared-body limits `config` asks for: bodies up to `cache.maxEntryBytes` are kept while
 * the process's kept bodies fit `cache.fillBudgetBytes` (store/fill-budget.ts), and
 * a reader that holds the others back is waited on for `origin.streamIdleTimeoutMs` (to them,
 * the body stalled that long).
 *
 * @example
 * new SharedBody(response.body, { ...sharedBodyLimits(config), declaredBytes: 1234 });
 */
export function sharedBodyLimits(config: Config): SharedBodyLimits {
  return {
    keepBytes: config.cache.maxEntryBytes,
    laggardMs: config.origin.streamIdleTimeoutMs,
    budgetBytes: fillBudgetBytes(config),
  };
}

/** How long readers that keep up wait on a laggard by default: `origin.streamIdleTimeoutMs`'s default. */
const DEFAULT_LAGGARD_MS = 30_000;

/** A shared body's reader, as far as the watch needs it. */
export interface WatchedReader {
  /** Index of the next chunk it gets. */
  next: number;
  /** Set while it waits for the next chunk. */
  wake?: (() => void) | undefined;
  /** Bytes it has been given so far. */
  readBytes: number;
  /** Set while it holds back the others; cleared (by the body) when it catches up. */
  lagging?: boolean;
  /** `readBytes` when it was last marked lagging: what it reads from then on is its pace. */
  laggingFrom?: number;
  /** Set while it holds the window and has not read since; cleared (by the body) when it reads. */
  stalled?: boolean;
  controller: ReadableStreamDefaultController<Uint8Array>;
}

/** What the watch sees of a shared body. */
export interface LaggardView {
  readers(): Iterable<WatchedReader>;
  /** Whether the origin read waits for the slowest reader to make room in the window. */
  blocked(): boolean;
  /** Removes a cut-off reader (its stream already errored) from the body. */
  cut(reader: WatchedReader): void;
  /** The least a lagging reader must read in `laggardMs` not to be cut: the body's window. */
  windowBytes: number;
}

/**
 * Watches the readers of a body read only a window ahead of the slowest of them. While the
 * origin read waits on the readers at the back of the window, they are cut off (their
 * streams error with CLIENT_TOO_SLOW) when, `laggardMs` later, they have read nothing at all
 * (stalled: the origin connection and its permit would otherwise be held until
 * `origin.streamTimeoutMs`, and a few such clients starve every visitor's cold miss), or when
 * another reader waited for bytes meanwhile and they read less than a window in that time
 * (lagging: one client that trickles a chunk now and then never stalls everyone else's
 * download). A client that is only slower than the others, reading a window or more every
 * `laggardMs` (35 KiB/s with the default 1 MiB and 30 s), is never cut: the others go at its
 * pace, as they would behind any shared stream, and its download is never cut short. Readers
 * that are slow together and keep reading hold nobody back and are never cut.
 *
 * @example
 * const laggards = new Laggards(30_000, { readers, blocked, cut, windowBytes });
 * laggards.watch(); // whenever the read waits on the window, or a reader waits for bytes
 * // and the body clears `reader.stalled` when a reader reads, `reader.lagging` when it caught up
 */
export class Laggards {
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly laggardMs: number = DEFAULT_LAGGARD_MS,
    private readonly body: LaggardView,
  ) {}

  /** Marks the readers that hold the window and starts their clock, when the origin read waits on them. */
  watch(): void {
    const { readers, blocked } = this.body;
    if (!blocked() || this.timer !== undefined) return;
    const now = [...readers()];
    const othersWait = now.some((reader) => reader.wake !== undefined);
    // The slowest readers (at the back of the window) hold it; one that waits for bytes never does.
    const back = Math.min(...now.map((reader) => reader.next));
    for (const reader of now) {
      if (reader.next !== back || reader.wake !== undefined) continue;
      reader.stalled = true;
      if (othersWait && !reader.lagging) {
        reader.lagging = true;
        reader.laggingFrom = reader.readBytes;
      }
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!blocked()) return;
      const error = new HerdlessError(
        "CLIENT_TOO_SLOW",
        `a client held the body back for ${this.laggardMs} ms; it was cut off`,
      );
      for (const reader of [...readers()]) {
        const tooSlow = reader.lagging && reader.readBytes - (reader.laggingFrom ?? 0) < this.body.windowBytes;
        if (!tooSlow && !reader.stalled) {
          // Slower than the others, not too slow: its pace is measured afresh from here.
          reader.laggingFrom = reader.readBytes;
          continue;
        }
        reader.controller.error(error);
        this.body.cut(reader);
      }
      this.watch();
    }, this.laggardMs);
  }

  /** The body ended: nobody is held back any more. */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
