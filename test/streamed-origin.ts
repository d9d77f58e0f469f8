import type { Timers } from "../src/core/guard/local-guard.ts";

/**
 * What a unit test of a streamed origin body needs: timers that fire only when the test says
 * which delay has passed, and an origin body it feeds chunk by chunk.
 *
 * @example
 * const { timers, fire } = manualTimers();
 * fire(config.origin.streamIdleTimeoutMs); // every pending timer set for that delay
 */
export function manualTimers() {
  const pending = new Map<number, { ms: number; fn: () => void }>();
  let next = 1;
  const timers: Timers = {
    setTimeout: (fn, ms) => {
      pending.set(next, { ms, fn });
      return next++;
    },
    clearTimeout: (handle) => pending.delete(handle as number),
  };
  /** Fires every pending timer set for `ms`. */
  const fire = (ms: number) => {
    for (const [id, t] of [...pending]) {
      if (t.ms !== ms) continue;
      pending.delete(id);
      t.fn();
    }
  };
  return { timers, fire };
}

/** An origin body the test feeds chunk by chunk. */
export function trickle() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    start: (c) => void (controller = c),
    cancel: () => void (cancelled = true),
  });
  return {
    body,
    send: (text: string) => controller.enqueue(new TextEncoder().encode(text)),
    end: () => controller.close(),
    get cancelled() {
      return cancelled;
    },
  };
}
