import type { Config } from "../config.ts";
import { HerdlessError, isHerdlessError } from "../errors.ts";
import type { Timers } from "../guard/local-guard.ts";
import { EventLoopTurns } from "../http/event-loop-turns.ts";

/** How a streamed body ended, for its permit's release. */
export type StreamEnding = "ended" | "failed" | "lost";

/**
 * Wraps a streamed origin body so the permit goes back exactly once, when the body ends
 * (`done("ended")`), fails or stalls (`done("failed")`), its permit is lost (`done("lost")`:
 * the breaker learns nothing from it), or its reader cancels it (`done("ended")`, once the
 * origin body is cancelled: the origin answered; the client left). Idle time counts only
 * while waiting on the origin; the overall deadline counts from the head, whoever is slow.
 *
 * A body that has delivered all its `declaredBytes` ends there, without waiting for a
 * further read: workerd stops reading a body of known length once it has that many bytes,
 * so the end would otherwise never be seen and the permit would be held until
 * `origin.streamTimeoutMs` (every relayed POST or PUT on the Worker starved the cap).
 */
export function holdUntilDone(
  body: ReadableStream<Uint8Array>,
  declaredBytes: number | undefined,
  config: Config,
  timers: Timers,
  url: string,
  done: (ending: StreamEnding) => void,
  lost: AbortSignal | undefined,
): ReadableStream<Uint8Array> {
  const { streamIdleTimeoutMs, streamTimeoutMs } = config.origin;
  const reader = body.getReader();
  let finished = false;
  let cancelling = false;
  let deliveredBytes = 0;
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  // Between always-ready sockets this pump would hold the isolate's other requests till its end.
  const turns = new EventLoopTurns();
  const finish = (ending: StreamEnding) => {
    if (finished) return false;
    finished = true;
    unlisten();
    timers.clearTimeout(overall);
    done(ending);
    return true;
  };
  const stop = (error: HerdlessError, ending: StreamEnding = "failed") => {
    if (!finish(ending)) return;
    controller?.error(error);
    void reader.cancel(error).catch(() => undefined);
  };
  const overall = timers.setTimeout(
    () => stop(tooSlow(url, `took longer than ${streamTimeoutMs} ms`)),
    streamTimeoutMs,
  );
  // The slot may be given to another once the permit is lost: the origin body stops here.
  const unlisten = whenAborted(lost, () => stop(lostPermit(lost?.reason, url), "lost"));
  return new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    async pull(c) {
      let read: ReadableStreamReadResult<Uint8Array>;
      try {
        read = await readOrStall(reader, timers, streamIdleTimeoutMs, () =>
          stop(tooSlow(url, `stalled for ${streamIdleTimeoutMs} ms`)),
        );
      } catch (error) {
        if (finish("failed")) c.error(brokenOff(error, url));
        return;
      }
      // A cancel ends a pending read at once; the cancel frees the slot once the origin body is torn down.
      if (finished || cancelling) return;
      if (read.done) {
        finish("ended");
        c.close();
        return;
      }
      c.enqueue(read.value);
      deliveredBytes += read.value.byteLength;
      // All the declared bytes are here: the origin's body is complete (a longer one is the
      // origin's error, cut off by the runtime as it is without herdless).
      if (declaredBytes !== undefined && deliveredBytes >= declaredBytes && finish("ended")) {
        c.close();
        void reader.cancel().catch(() => undefined);
        return;
      }
      await turns.passed(read.value.byteLength);
    },
    async cancel(reason) {
      // The slot frees once the origin body is torn down, not before: otherwise the next
      // caller's request reaches the origin while this connection is still open.
      cancelling = true;
      try {
        await reader.cancel(reason);
      } finally {
        finish("ended");
      }
    },
  });
}

/**
 * `body` for one client that must keep reading it: a client that takes nothing for `idleMs`
 * after a chunk was handed to it is cut off (its stream errors with CLIENT_TOO_SLOW) and
 * `body` is cancelled, which frees the origin connection and its permit
 * ({@link holdUntilDone}): a client that asks for a large file and reads nothing would
 * otherwise hold them until `origin.streamTimeoutMs`, and a few such clients starve the cap.
 *
 * @example
 * const forClient = cutWhenUnread(holdUntilDone(…), config.origin.streamIdleTimeoutMs, timers, url);
 */
export function cutWhenUnread(
  body: ReadableStream<Uint8Array>,
  idleMs: number,
  timers: Timers,
  url: string,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let idle: unknown;
  const stopWatching = () => {
    if (idle !== undefined) timers.clearTimeout(idle);
    idle = undefined;
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        stopWatching();
        const read = await reader.read();
        if (read.done) return c.close();
        c.enqueue(read.value);
        idle = timers.setTimeout(() => {
          const error = new HerdlessError("CLIENT_TOO_SLOW", `the client took nothing of ${url} for ${idleMs} ms`);
          c.error(error);
          void reader.cancel(error).catch(() => undefined);
        }, idleMs);
      },
      cancel(reason) {
        stopWatching();
        return reader.cancel(reason);
      },
    },
    // The next pull is the client's next read: the time until it is the client's idleness.
    { highWaterMark: 0 },
  );
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

/** What a runtime's body error means to whoever reads the body: the origin broke its answer off. */
function brokenOff(error: unknown, url: string): HerdlessError {
  if (isHerdlessError(error)) return error;
  return new HerdlessError("ORIGIN_TRUNCATED", `origin body for ${url} ended early`, { cause: error });
}

function tooSlow(url: string, how: string): HerdlessError {
  return new HerdlessError("ORIGIN_TIMEOUT", `origin body for ${url} ${how}`);
}

/** The error a lost permit stops a streamed body with (not the origin's doing: the breaker does not count it). */
function lostPermit(reason: unknown, url: string): HerdlessError {
  if (isHerdlessError(reason)) return reason;
  return new HerdlessError("COORDINATOR_UNAVAILABLE", `origin permit lost while streaming ${url}`, { cause: reason });
}

/** Calls `fn` once `signal` aborts (at once if it has); returns what stops listening. */
function whenAborted(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (!signal) return () => undefined;
  signal.addEventListener("abort", fn, { once: true });
  if (signal.aborted) queueMicrotask(fn);
  return () => signal.removeEventListener("abort", fn);
}
