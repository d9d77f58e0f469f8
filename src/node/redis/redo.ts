/*
 * A command that fails without an answer (a timeout, a connection dropped under it) may still
 * run in Redis: a Redis that stalled runs what is in its socket when it resumes. What such a
 * command takes (a lease, a permit, a relay's pointer) is given back by the caller once Redis
 * answers again, and what failed to be given back is given back then too: a {@link Redo}.
 */

import { mayHaveRun } from "./connection.ts";

/** Work kept at most: past it, the oldest is forgotten (what it would undo lapses by its TTL). */
const MAX_PENDING = 10_000;

/**
 * Things to do once Redis answers again: each `attempt` is tried every `everyMs` until it
 * settles without error or its `lapsed()` says it no longer matters. At most
 * {@link MAX_PENDING} wait; past that the oldest is dropped.
 *
 * @example
 * redo.add({ attempt: () => release(lease), lapsed: () => lease.expiresAt <= clock.now() });
 */
export class Redo {
  private readonly pending = new Set<{ attempt: () => Promise<unknown>; lapsed: () => boolean }>();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly everyMs: number) {}

  add(work: { attempt: () => Promise<unknown>; lapsed: () => boolean }): void {
    if (this.pending.size >= MAX_PENDING) this.pending.delete(this.pending.values().next().value!);
    this.pending.add(work);
    this.schedule();
  }

  /**
   * For a command that failed with `error`: one sent and never answered may run yet when Redis
   * resumes ({@link mayHaveRun}), so `undo` is done once Redis answers, however late.
   */
  undoIfRan(error: unknown, undo: () => Promise<unknown>): void {
    if (mayHaveRun(error)) this.add({ attempt: undo, lapsed: () => false });
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => void this.once(), this.everyMs);
    this.timer.unref();
  }

  private async once(): Promise<void> {
    await Promise.all(
      [...this.pending].map(async (work) => {
        const done =
          work.lapsed() ||
          (await work.attempt().then(
            () => true,
            () => false,
          ));
        if (done) this.pending.delete(work);
      }),
    );
    this.timer = undefined;
    if (this.pending.size > 0) this.schedule();
  }
}
