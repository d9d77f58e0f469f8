import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { STREAMING } from "../../core/fill/relay.ts";
import { PIECE_BYTES } from "./relay-body.ts";
import { head, readAll, twoProcesses } from "../../../test/node/relay-kit.ts";

const MiB = 1024 * 1024;

/** A body of `bytes` (byte i is `i % 251`) handed out as fast as it is read, and how much of it was read. */
function origin(bytes: number): { body: ReadableStream<Uint8Array>; sent: () => number } {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= bytes) return controller.close();
      const chunk = new Uint8Array(Math.min(64 * 1024, bytes - sent)).map((_, i) => (sent + i) % 251);
      sent += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  return { body, sent: () => sent };
}

const hashOf = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

type Relay = Awaited<ReturnType<typeof twoProcesses>>["leader"];

/** The leader offers an origin body of `bytes` (too large to keep) to the waiting members; the source and the announcement. */
async function offerLarge(leader: Relay, bytes: number) {
  const source = origin(bytes);
  const message = await leader.offer(head.key, 7, {
    kind: "stream",
    head,
    body: source.body,
    size: "too-large",
    fwdStatus: 200,
  });
  if (message === undefined) throw new Error("nothing offered: no member waited");
  return { source, message };
}

describe("RedisFlightRelay: a body larger than its window", () => {
  it("Redis holds at most the window of it at any moment, the follower reads all of it, and the origin is read no faster than the follower reads", async () => {
    const { leader, follower, waitOn, client, relayKeys } = await twoProcesses(MiB);
    await waitOn();
    const { source, message } = await offerLarge(leader, 12 * MiB);
    const answer = await follower.take(head.key, message);
    if (answer?.kind !== "stream") throw new Error("not a stream");
    const reader = answer.body.getReader();
    const parts: Uint8Array[] = [];
    let read = 0;
    let most = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      read += value.byteLength;
      // Held back: the follower paused after each piece while the leader could have raced on.
      if (parts.length % 4 === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      const [stream] = (await relayKeys()).filter((key) => /:[0-9a-f-]{36}$/.test(key));
      if (stream) most = Math.max(most, Number(await client.xlen(stream)));
      // The origin ran ahead of this reader by at most the window (1 MiB), the follower's read
      // batch (8 pieces), the writer's queue (4 pieces) and a piece and a chunk in hand: never
      // the whole 12 MiB, as when Redis took everything the origin sent.
      expect(source.sent() - read).toBeLessThanOrEqual(MiB + 12 * PIECE_BYTES + PIECE_BYTES + 64 * 1024);
    }
    const whole = Buffer.concat(parts);
    expect(whole.byteLength).toBe(12 * MiB);
    expect(hashOf(whole)).toBe(hashOf(new Uint8Array(12 * MiB).map((_, i) => i % 251)));
    // The window's 4 body pieces, the next one, and the head or the end.
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(MiB / PIECE_BYTES + 2);
  });

  it("a waiter that comes once the window has moved past the body's start is told to wait for the flight's end, not handed a body without its start", async () => {
    const { leader, follower, waitOn, holdLease } = await twoProcesses(MiB);
    await holdLease(head.key, 7);
    await waitOn();
    const { message } = await offerLarge(leader, 8 * MiB);
    const first = await follower.take(head.key, message);
    if (first?.kind !== "stream") throw new Error("not a stream");
    const reader = first.body.getReader();
    let read = 0;
    while (read < 3 * MiB) read += (await reader.read()).value?.byteLength ?? 0;
    // The start is gone from Redis: a late waiter cannot take it, and the pointer says so.
    expect(await follower.take(head.key, message)).toBeUndefined();
    expect(await follower.current(head.key)).toBe(STREAMING);
    // The first reader still gets the whole body.
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      read += value.byteLength;
    }
    expect(read).toBe(8 * MiB);
  });

  it("a follower that stops reading holds the window no longer than the stall bound: the other reads on, the stalled one's body errors (cut, never a hang)", async () => {
    const { leader, follower, waitOn } = await twoProcesses(MiB, 2_000);
    await waitOn();
    const { message } = await offerLarge(leader, 6 * MiB);
    const [stalled, reading] = [await follower.take(head.key, message), await follower.take(head.key, message)];
    if (stalled?.kind !== "stream" || reading?.kind !== "stream") throw new Error("not a stream");
    const stalledReader = stalled.body.getReader();
    await stalledReader.read();
    expect((await readAll(reading.body)).byteLength).toBe(6 * MiB);
    stalledReader.releaseLock();
    await expect(readAll(stalled.body)).rejects.toThrow(/gone/);
  });
});
