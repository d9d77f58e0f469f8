import { describe, expect, it } from "vitest";
import { HerdlessError } from "../../core/errors.ts";
import { STREAMING } from "../../core/fill/relay.ts";
import { controlledBody, head, readAll, twoProcesses } from "../../../test/node/relay-kit.ts";

describe("RedisFlightRelay", () => {
  it("a follower in another process reads a body as the leader's origin sends it, and the whole of it", async () => {
    const { leader, follower, waitOn } = await twoProcesses();
    await waitOn();
    const { body, controller } = controlledBody();
    const first = new Uint8Array(600_000).map((_, i) => i & 0xff);
    const second = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
    const message = await leader.offer(head.key, 7, {
      kind: "stream",
      head,
      body,
      bytes: 900_000,
      size: "fits",
      fwdStatus: 200,
    });
    expect(message).toMatch(/^relayed:7 /);

    const answer = await follower.take(head.key, message!);
    expect(answer).toMatchObject({ kind: "stream", head, bytes: 900_000, size: "fits", fwdStatus: 200 });
    if (answer?.kind !== "stream") throw new Error("not a stream");
    const reader = answer.body.getReader();
    controller.enqueue(first);
    // The first bytes arrive while the origin still holds back the rest.
    const early = await reader.read();
    expect(early.done).toBe(false);
    // Compared as buffers: a deep toEqual over a megabyte takes seconds on a loaded machine.
    expect(Buffer.from(early.value!).equals(first.subarray(0, early.value!.byteLength))).toBe(true);
    controller.enqueue(second);
    controller.close();
    const rest: Uint8Array[] = [early.value!];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest.push(value);
    }
    expect(Buffer.concat(rest).equals(Buffer.concat([first, second]))).toBe(true);
  });

  it("a body the origin breaks off errors at the follower too, never ends as if whole", async () => {
    const { leader, follower, waitOn } = await twoProcesses();
    await waitOn();
    const { body, controller } = controlledBody();
    const message = await leader.offer(head.key, 7, { kind: "stream", head, body, size: "unknown", fwdStatus: 200 });
    const answer = await follower.take(head.key, message!);
    if (answer?.kind !== "stream") throw new Error("not a stream");
    controller.enqueue(new Uint8Array(1000));
    controller.error(new HerdlessError("ORIGIN_TRUNCATED", "origin reset"));
    await expect(readAll(answer.body)).rejects.toThrow(/failed:ORIGIN_TRUNCATED/);
  });

  it("an error answer reaches the follower whole: status, headers and body", async () => {
    const { leader, follower, waitOn } = await twoProcesses();
    await waitOn();
    const body = new Uint8Array(700_000).map((_, i) => (i * 3) & 0xff);
    const response = { status: 500, headers: [["x-app", "broken"]] as [string, string][], body };
    const message = await leader.offer(head.key, 9, {
      kind: "failed",
      code: "ORIGIN_STATUS",
      message: "origin answered 500",
      fwdStatus: 500,
      response,
    });
    const answer = await follower.take(head.key, message!);
    expect(answer).toMatchObject({ kind: "failed", code: "ORIGIN_STATUS", fwdStatus: 500 });
    if (answer?.kind !== "failed") throw new Error("not a failure");
    expect(answer.response.status).toBe(500);
    expect(answer.response.headers).toEqual([["x-app", "broken"]]);
    expect(Buffer.from(answer.response.body).equals(body)).toBe(true);
  });

  it("a waiter that missed the announcement finds the answer of the flight holding the lease, never an older flight's", async () => {
    const { leader, follower, holdLease, waitOn } = await twoProcesses();
    await waitOn();
    const response = { status: 500, headers: [] as [string, string][], body: new Uint8Array([1, 2, 3]) };
    await holdLease(head.key, 11);
    const message = await leader.offer(head.key, 11, {
      kind: "failed",
      code: "ORIGIN_STATUS",
      message: "500",
      response,
    });
    expect(await follower.current(head.key)).toBe(message);
    // A newer flight holds the lease now: its waiters wait for its own answer.
    await holdLease(head.key, 12);
    expect(await follower.current(head.key)).toBeUndefined();
    expect(await follower.current("GET http://site.test/other")).toBeUndefined();
  });

  it("no other process waits on the key: nothing is copied into Redis, and the leader's reader of the body is let go; a waiter that comes later is told to wait for that flight's end", async () => {
    const { leader, follower, holdLease, relayKeys } = await twoProcesses();
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({ cancel: () => void (cancelled = true) });
    await holdLease(head.key, 7);
    expect(
      await leader.offer(head.key, 7, { kind: "stream", head, body, size: "too-large", fwdStatus: 200 }),
    ).toBeUndefined();
    expect(cancelled).toBe(true);
    // Only the mark: no record, no body.
    expect((await relayKeys()).map((key) => key.includes(":{"))).toEqual([true]);
    expect(await follower.current(head.key)).toBe(STREAMING);
    // Once the flight's lease is another's or free, the mark says nothing: the waiter asks again.
    await holdLease(head.key, 8);
    expect(await follower.current(head.key)).toBeUndefined();
  });

  it("an error answer for everyone is copied though no process waits yet: a caller that subscribes late finds it whole; one request's unconfirmed error is not", async () => {
    const { leader, follower, holdLease } = await twoProcesses();
    const response = { status: 500, headers: [] as [string, string][], body: new Uint8Array([5, 0, 0]) };
    const failure = { kind: "failed", code: "ORIGIN_STATUS", message: "500", fwdStatus: 500, response } as const;
    await holdLease(head.key, 21);
    expect(await leader.offer(head.key, 21, { ...failure, askedBy: "attacker" })).toBeUndefined();
    await holdLease(head.key, 22);
    const message = await leader.offer(head.key, 22, failure);
    expect(message).toMatch(/^relayed:22 /);
    expect(await follower.current(head.key)).toBe(message);
    const answer = await follower.take(head.key, message!);
    if (answer?.kind !== "failed") throw new Error("not a failure");
    expect([answer.response.status, [...answer.response.body]]).toEqual([500, [5, 0, 0]]);
  });

  it("a record goes as soon as the last reader that took it has read it to the end", async () => {
    const { leader, follower, waitOn, relayKeys } = await twoProcesses();
    await waitOn();
    const { body, controller } = controlledBody();
    const message = await leader.offer(head.key, 7, { kind: "stream", head, body, size: "fits", fwdStatus: 200 });
    const [one, two] = [await follower.take(head.key, message!), await follower.take(head.key, message!)];
    if (one?.kind !== "stream" || two?.kind !== "stream") throw new Error("not a stream");
    controller.enqueue(new Uint8Array(1_000).fill(1));
    controller.close();
    expect((await readAll(one.body)).byteLength).toBe(1_000);
    expect((await relayKeys()).length).toBeGreaterThan(0);
    expect((await readAll(two.body)).byteLength).toBe(1_000);
    for (let i = 0; i < 200 && (await relayKeys()).length > 0; i++) await new Promise((r) => setTimeout(r, 5));
    expect(await relayKeys()).toEqual([]);
  });

  it("an announcement of another format or a gone answer is no answer: the waiter asks again", async () => {
    const { follower } = await twoProcesses();
    expect(await follower.take(head.key, "relayed:garbage")).toBeUndefined();
    expect(await follower.take(head.key, "relayed:5 00000000-0000-0000-0000-000000000000")).toBeUndefined();
  });
});
