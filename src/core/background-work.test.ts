import { describe, expect, it } from "vitest";
import { BackgroundWork } from "./background-work.ts";

/** A promise settled from outside. */
function deferred(): { promise: Promise<void>; resolve(): void; reject(error: Error): void } {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

describe("BackgroundWork", () => {
  it("settles once every piece of work has, failed ones included, and work added meanwhile", async () => {
    const behind = new BackgroundWork();
    const first = deferred();
    const failing = deferred();
    const later = deferred();
    behind.add(first.promise);
    const tracked = behind.add(failing.promise);
    let settled = false;
    const waiting = behind.settled().then(() => (settled = true));
    failing.reject(new Error("origin gone"));
    await expect(tracked).resolves.toBeUndefined();
    // Started by running work before it ended: the wait covers it too.
    behind.add(later.promise);
    first.resolve();
    await Promise.resolve();
    await Promise.resolve();
    expect(settled).toBe(false);
    later.resolve();
    await waiting;
    expect(settled).toBe(true);
  });

  it("settles at once with nothing running", async () => {
    await expect(new BackgroundWork().settled()).resolves.toBeUndefined();
  });
});
