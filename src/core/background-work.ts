/**
 * Work a runtime starts behind an answer (the fleet's byte accounting after a stored write,
 * a key object's refreshes after its fill answered), kept so that shutdown and tests can wait
 * until all of it, and whatever it started meanwhile, has settled. A failure is the work's
 * own to report: here it only ends the wait.
 *
 * @example
 * const behind = new BackgroundWork();
 * ctx.waitUntil(behind.add(refresh()));
 * await behind.settled();
 */
export class BackgroundWork {
  private readonly running = new Set<Promise<void>>();

  /** Tracks `work` until it settles; the returned promise settles with it and never rejects. */
  add(work: Promise<unknown>): Promise<void> {
    const tracked: Promise<void> = work.then(
      () => this.done(tracked),
      () => this.done(tracked),
    );
    this.running.add(tracked);
    return tracked;
  }

  /** Resolves once nothing is running, work added while waiting included. */
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  private done(tracked: Promise<void>): void {
    this.running.delete(tracked);
  }
}
