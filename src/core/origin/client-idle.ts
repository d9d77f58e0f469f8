import { HerdlessError } from "../errors.ts";
import type { Timers } from "../guard/local-guard.ts";

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
        // A source that already failed rejects the cancel with its error; the client that
        // cancels is gone, and the runtime that cancels for it does not listen (workerd's
        // pipe into a FixedLengthStream left it an unhandled rejection).
        return reader.cancel(reason).catch(() => undefined);
      },
    },
    // The next pull is the client's next read: the time until it is the client's idleness.
    { highWaterMark: 0 },
  );
}
