/**
 * The writes a key's object makes after its answer: a failed one (an object reset in that
 * tick, its storage gone) is a lost write, never an unhandled rejection that takes the object's
 * other work down with it.
 */
import { describe, expect, it } from "vitest";
import { AfterAnswer } from "../../src/cloudflare/after-answer.ts";

describe("writes after the answer", () => {
  it("an async write that fails is logged and the writes after it still run, in order", async () => {
    const kept: Promise<unknown>[] = [];
    const later = new AfterAnswer((work) => kept.push(work));
    const ran: string[] = [];
    later.defer(() => Promise.reject(new Error("Application called abortAllDurableObjects().")));
    later.defer(() => {
      throw new Error("storage gone");
    });
    later.defer(() => ran.push("entry"));
    expect(ran).toEqual([]);
    await Promise.all(kept);
    // One more turn for the failed write's rejection to be handled (vitest fails the run on an unhandled one).
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(ran).toEqual(["entry"]);
  });
});
