import { describe, expect, it } from "vitest";
import { JoinedAnswers, type KeptAnswer } from "./kept-answer.ts";

const kept = (): KeptAnswer => ({
  head: "HTTP/1.1 200 OK\r\ncontent-length: 16384\r\n\r\n",
  contentLength: 16_384,
  whole: undefined,
  status: 200,
  statusMessage: "OK",
  keepAliveTimeout: 65_000,
  maxRequestsPerSocket: 0,
});

describe("JoinedAnswers: the memory a hit's joined head and body may take", () => {
  it("joins at most 8 MiB of answers in a second, and lets go of them in the next", () => {
    const joined = new JoinedAnswers();
    const body = Buffer.alloc(16_384, 1);
    // An attacker asks for 1,000 pages of 16 KiB twice each within one second.
    const answers = Array.from({ length: 1_000 }, () => kept());
    for (const answer of answers) joined.join(answer, body, 5_000);
    const held = answers.filter((answer) => answer.whole !== undefined);
    expect(held.length).toBe(Math.floor((8 * 1024 * 1024) / (16_384 + answers[0]!.head.length)));
    expect(held[0]!.whole!.subarray(answers[0]!.head.length).equals(body)).toBe(true);
    // The next second's first join lets go of all of them.
    const next = kept();
    joined.join(next, body, 6_000);
    expect(answers.filter((answer) => answer.whole !== undefined)).toHaveLength(0);
    expect(next.whole).toBeDefined();
  });

  it("never copies a body over 64 KiB", () => {
    const joined = new JoinedAnswers();
    const answer = kept();
    joined.join(answer, Buffer.alloc(64 * 1024 + 1), 0);
    expect(answer.whole).toBeUndefined();
  });
});
