/**
 * A count of places against a cap read at each ask (a config may be swapped at run time): the
 * WebSocket tunnels against `origin.maxWebSockets`, the requests waiting for an origin's answer
 * against `origin.maxWaiting`.
 *
 * @example
 * const places = new Places(() => 2);
 * const free = places.take(); // undefined: all taken
 * free?.(); // once done with it
 */
export class Places {
  private taken = 0;
  constructor(private readonly cap: () => number) {}

  /** A place, or undefined when every one is taken; the function returned gives it back (once). */
  take(): (() => void) | undefined {
    if (this.taken >= this.cap()) return undefined;
    this.taken++;
    let freed = false;
    return () => {
      if (freed) return;
      freed = true;
      this.taken--;
    };
  }
}
