import { afterEach, describe, expect, it } from "vitest";
import { manualTimers } from "../../../test/streamed-origin.ts";
import { ManualClock } from "../clock.ts";
import { parseConfig } from "../config.ts";
import { LocalGuard } from "../guard/local-guard.ts";
import type { EngineRequest, EngineResponse } from "../http/respond.ts";
import { forwardPolicy } from "./forward.ts";
import type { GuardedCallDeps } from "./guarded-call.ts";
import { relay } from "./relay.ts";
import { UPLOAD_BUDGET_BYTES, uploadHeldBytes } from "./upload-budget.ts";
import { readUpload, UPLOAD_BUFFER_BYTES } from "./upload.ts";

const KiB = 1024;
const clients: ReadableStreamDefaultController<Uint8Array>[] = [];
afterEach(async () => {
  // Every client a test left open goes away: what its upload held goes back to the budget, which the whole process shares.
  for (const client of clients.splice(0)) {
    try {
      client.error(new Error("client gone"));
    } catch {
      // Already closed.
    }
  }
  await turns(20);
  expect(uploadHeldBytes()).toBe(0);
});

/** A client's body the test sends by hand: `send(bytes)` one chunk, `end()`. */
function client() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>(
    { start: (c) => void clients.push((controller = c)) },
    { highWaterMark: 0 },
  );
  return {
    stream,
    send: (bytes: number) => controller.enqueue(new Uint8Array(bytes)),
    end: () => controller.close(),
  };
}

async function turns(n: number): Promise<void> {
  for (let turn = 0; turn < n; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * An origin that reads a request's whole body, then answers with its length; `/page` is a
 * GET's page. With `gate`, it reads the body only while the gate is open (a slow origin).
 */
function origin(gate = { open: true }) {
  const calls: string[] = [];
  const fetchImpl: GuardedCallDeps["fetch"] = async (url, init) => {
    calls.push(`${init?.method ?? "GET"} ${String(url)}`);
    const body = init?.body;
    if (!(body instanceof ReadableStream)) return new Response(`got ${body ? (body as Uint8Array).byteLength : 0}`);
    const reader = (body as ReadableStream<Uint8Array>).getReader();
    let bytes = 0;
    for (;;) {
      while (!gate.open) await new Promise((resolve) => setTimeout(resolve, 0));
      const read = await reader.read();
      if (read.done) return new Response(`got ${bytes}`);
      bytes += read.value.byteLength;
    }
  };
  return { fetchImpl, calls, gate };
}

/** herdless's relay on a guard of `maxConcurrency` permits, its timers the test's. */
function setup(fetchImpl: GuardedCallDeps["fetch"], maxConcurrency = 1) {
  const clock = new ManualClock(1_700_000_000_000);
  const { timers, fire } = manualTimers();
  const config = parseConfig({ origin: { url: "http://origin.test", maxConcurrency } });
  const guard = new LocalGuard({ config, clock, timers });
  const originDeps: GuardedCallDeps = { config, clock, guard, fetch: fetchImpl, timers };
  const deps = { config, forward: forwardPolicy(config), originDeps };
  const send = (
    method: string,
    path: string,
    body?: ReadableStream<Uint8Array> | Uint8Array,
  ): Promise<EngineResponse> => {
    const request: EngineRequest = {
      method,
      url: new URL(`http://shop.test${path}`),
      headers: new Headers(),
      rawHeaders: [],
      body: body ?? null,
    };
    return relay(deps, request, {});
  };
  return { send, fire, guard, config };
}

async function text(response: EngineResponse): Promise<string> {
  return new Response(response.body as BodyInit | null).text();
}

describe("readUpload", () => {
  it("reads a small body whole, and streams a larger one whose end is still pending", async () => {
    const small = client();
    small.send(100);
    small.end();
    const whole = await readUpload(small.stream);
    expect(whole.kind === "whole" && whole.body?.byteLength).toBe(100);
    const big = client();
    big.send(UPLOAD_BUFFER_BYTES + 1);
    const large = await readUpload(big.stream);
    expect(large.kind === "streamed" && large.pending()).toBe(true);
    whole.release();
    large.release();
  });

  it("POSTs that send their headers and no body reserve nothing: past 128 of them, a small upload is still read whole before its permit", async () => {
    const idle = Array.from({ length: 200 }, () => readUpload(client().stream));
    await turns(3);
    expect(uploadHeldBytes()).toBe(0);
    const small = client();
    small.send(100);
    small.end();
    const next = await readUpload(small.stream);
    expect(next.kind).toBe("whole");
    next.release();
    void idle;
  });

  it("the budget is charged by the bytes held: once uploads hold UPLOAD_BUDGET_BYTES, the next streams, but not before its first bytes are in", async () => {
    const holders = Array.from({ length: UPLOAD_BUDGET_BYTES / UPLOAD_BUFFER_BYTES }, () => {
      const c = client();
      c.send(UPLOAD_BUFFER_BYTES); // all it may send before its permit, then nothing
      return readUpload(c.stream);
    });
    await turns(3);
    expect(uploadHeldBytes()).toBe(UPLOAD_BUDGET_BYTES);
    const late = client();
    let read: Awaited<ReturnType<typeof readUpload>> | undefined;
    void readUpload(late.stream).then((upload) => (read = upload));
    await turns(3);
    // No body byte yet: no permit is asked for.
    expect(read).toBeUndefined();
    late.send(10);
    await turns(3);
    expect(read?.kind).toBe("streamed");
    read?.release();
    // The holders leave: the budget is back.
    for (const c of clients.splice(0)) c.error(new Error("client gone"));
    expect((await Promise.all(holders)).map((u) => u.kind)).toEqual(holders.map(() => "broken"));
    expect(uploadHeldBytes()).toBe(0);
  });
});

describe("an upload's declared length", () => {
  const watch = (declaredBytes: number) => ({
    config: parseConfig({ origin: { url: "http://origin.test" } }),
    timers: manualTimers().timers,
    contended: () => Promise.resolve(false),
    url: "http://origin.test/upload",
    declaredBytes,
  });

  it("a body read whole that ends short of its Content-Length is broken, not sent", async () => {
    const short = client();
    short.send(100);
    short.end();
    const upload = await readUpload(short.stream, watch(200));
    expect(upload).toMatchObject({
      kind: "broken",
      message: expect.stringContaining("came to 100 bytes, not the 200 its Content-Length declares"),
    });
  });

  it("a streamed body that ends short of its Content-Length errors, and its origin call is stopped", async () => {
    const short = client();
    short.send(UPLOAD_BUFFER_BYTES + 1);
    const upload = await readUpload(short.stream, watch(UPLOAD_BUFFER_BYTES + 10));
    if (upload.kind !== "streamed") throw new Error(`expected a streamed upload, got ${upload.kind}`);
    const sent = new Response(upload.body).arrayBuffer();
    short.end();
    await expect(sent).rejects.toThrow(/came to 65537 bytes, not the 65546 its Content-Length declares/);
    expect(upload.signal.aborted).toBe(true);
    upload.release();
  });

  it("one that comes to its Content-Length is whole", async () => {
    const exact = client();
    exact.send(UPLOAD_BUFFER_BYTES + 1);
    const upload = await readUpload(exact.stream, watch(UPLOAD_BUFFER_BYTES + 1));
    if (upload.kind !== "streamed") throw new Error(`expected a streamed upload, got ${upload.kind}`);
    const sent = new Response(upload.body).arrayBuffer();
    exact.end();
    expect((await sent).byteLength).toBe(UPLOAD_BUFFER_BYTES + 1);
    expect(upload.signal.aborted).toBe(false);
    upload.release();
  });
});

describe("slow uploads and the origin's permits", () => {
  it("POSTs that never send their body hold no permit, however many: the victim's page is fetched at once, and the origin never saw them", async () => {
    const { fetchImpl, calls } = origin();
    const { send, guard } = setup(fetchImpl);
    // Past the 128 uploads the budget once reserved room for, then more, none sending a byte.
    for (let i = 0; i < 142; i++) void send("POST", `/tiny${i}`, client().stream);
    await turns(5);
    const victim = await send("GET", "/page");
    expect([victim.status, await text(victim)]).toEqual([200, "got 0"]);
    expect(calls).toEqual(["GET http://origin.test/page"]);
    expect((await guard.snapshot()).inFlight).toBe(0);
  });

  it("a streamed upload that stalls on its permit while a cold miss queues is cut: the uploader gets 408, the victim its page before its queue timeout", async () => {
    const { fetchImpl } = origin();
    const { send, fire, config } = setup(fetchImpl);
    const attacker = client();
    attacker.send(UPLOAD_BUFFER_BYTES + 1); // past what is read before the permit, then nothing
    const upload = send("POST", "/upload", attacker.stream);
    await turns(10);
    const victim = send("GET", "/page");
    await turns(5);
    // The pace is looked at every half origin.queueTimeoutMs.
    expect(config.origin.queueTimeoutMs).toBe(10_000);
    fire(5_000);
    const cut = await upload;
    expect(cut.status).toBe(408);
    expect(await text(cut)).toContain("held an origin permit others waited for");
    expect((await victim).status).toBe(200);
  });

  it("a slow upload nobody queues behind goes on at its pace and reaches the origin whole", async () => {
    const { fetchImpl } = origin();
    const { send, fire } = setup(fetchImpl);
    const uploader = client();
    uploader.send(UPLOAD_BUFFER_BYTES + 1);
    const upload = send("POST", "/upload", uploader.stream);
    await turns(10);
    fire(5_000);
    await turns(5);
    uploader.send(1_000);
    uploader.end();
    const answer = await upload;
    expect([answer.status, await text(answer)]).toEqual([200, `got ${UPLOAD_BUFFER_BYTES + 1_001}`]);
  });

  it("an upload held back by a slow origin is not cut though others queue: the client is ahead, the origin is the slow one", async () => {
    const gate = { open: true };
    const { fetchImpl } = origin(gate);
    const { send, fire } = setup(fetchImpl);
    const uploader = client();
    uploader.send(UPLOAD_BUFFER_BYTES);
    uploader.send(1);
    const upload = send("POST", "/upload", uploader.stream);
    await turns(10); // the origin has read all there was, and waits for more
    gate.open = false;
    uploader.send(64 * KiB); // taken by the origin's pending read
    uploader.send(64 * KiB); // held for it: the client is ahead
    await turns(10);
    const victim = send("GET", "/page");
    await turns(5);
    fire(5_000);
    await turns(5);
    gate.open = true;
    uploader.end();
    const answer = await upload;
    expect([answer.status, await text(answer)]).toEqual([200, `got ${UPLOAD_BUFFER_BYTES + 1 + 128 * KiB}`]);
    expect((await victim).status).toBe(200);
  });
});

describe("an upload in tiny chunks", () => {
  it("a body sent as 100,000 chunks of one byte reaches the origin whole in a few reads, not one read (and one write) per chunk", async () => {
    // The origin reads as a socket does: once per turn of the event loop, what has arrived.
    let reads = 0;
    const fetchImpl: GuardedCallDeps["fetch"] = async (_url, init) => {
      const reader = (init?.body as ReadableStream<Uint8Array>).getReader();
      let bytes = 0;
      for (;;) {
        await new Promise((resolve) => setImmediate(resolve));
        const read = await reader.read();
        if (read.done) return new Response(`got ${bytes}`);
        reads++;
        bytes += read.value.byteLength;
      }
    };
    const { send } = setup(fetchImpl);
    // The attacker: one byte per chunk (6 bytes each on the wire, chunked), as fast as it is read.
    const chunks = 100_000;
    let sent = 0;
    const attacker = new ReadableStream<Uint8Array>(
      { pull: (c) => (sent++ < chunks ? c.enqueue(new Uint8Array(1)) : c.close()) },
      { highWaterMark: 0 },
    );
    const answer = await send("POST", "/upload", attacker);
    expect([answer.status, await text(answer)]).toEqual([200, `got ${chunks}`]);
    // Each read takes what is queued (up to the 64 KiB read ahead), not one byte of it: ~2 reads.
    expect(reads).toBeLessThan(20);
  });
});
