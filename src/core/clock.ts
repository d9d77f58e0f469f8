/**
 * Time is a parameter: every engine takes a clock so tests control time and never sleep.
 *
 * @example
 * const clock = new ManualClock(0); clock.advance(5_000); clock.now(); // 5000
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told to; for tests and simulations. */
export class ManualClock implements Clock {
  constructor(private current = 0) {}
  now(): number {
    return this.current;
  }
  advance(ms: number): void {
    this.current += ms;
  }
  set(at: number): void {
    this.current = at;
  }
}
