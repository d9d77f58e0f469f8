/**
 * A real site behind the Worker: what an application's pages need to reach their visitors as
 * the origin sent them. The Node twin is test/node/real-apps.test.ts.
 */
import { describe, expect, it, vi } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { largeBodyByte } from "./origin-protocol.ts";
import { testOrigin } from "./test-origin.ts";

const decoder = new TextDecoder();

describe("server-sent events on a cached route (no bypass)", () => {
  it("reach the client as the origin writes them, not after origin.timeoutMs as a 504", async () => {
    const origin = await testOrigin({
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
      body: "data: one\n\ndata: two\n\n",
      mode: "stream",
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { origin: { timeoutMs: 3000 } }));
    const { response } = await dc!.fetch("/events", { headers: { accept: "text/event-stream" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(decoder.decode(first.value)).toBe("data: one\n\n");
    // The origin is still writing the stream: the first event went out before its end.
    expect((await origin.stats()).held).toBe(1);
    await origin.release();
    let rest = "";
    for (let read = await reader.read(); !read.done; read = await reader.read()) rest += decoder.decode(read.value);
    expect(rest).toBe("data: two\n\n");
    expect(await origin.count()).toBe(1);
  });
});

describe("a page the origin flushes in parts (streamed rendering: its head first, the rest once rendered)", () => {
  it("reaches the visitor as it is flushed, not once the origin finished, and is stored once complete", async () => {
    const page = "<html><head><title>shop</title></head><body>rendered</body></html>";
    const origin = await testOrigin({
      headers: { "content-type": "text/html; charset=utf-8", "cache-control": "max-age=60" },
      body: page,
      mode: "stream",
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const { response, settled } = await dc!.fetch("/shop");
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    // The first half of the page, while the origin still holds the rest.
    let text = decoder.decode((await reader.read()).value);
    expect(page.startsWith(text)).toBe(true);
    expect((await origin.stats()).held).toBe(1);
    await origin.release();
    for (let read = await reader.read(); !read.done; read = await reader.read()) text += decoder.decode(read.value);
    expect(text).toBe(page);
    await settled;
    const again = await dc!.get("/shop");
    expect(again.cacheStatus).toMatch(/^herdless; hit/);
    expect(again.body).toBe(page);
    expect(await origin.count()).toBe(1);
  });
});

describe("server-sent events past origin.streamTimeoutMs, or silent for origin.streamIdleTimeoutMs", () => {
  it.each([
    ["streamTimeoutMs", { streamTimeoutMs: 500 }],
    ["streamIdleTimeoutMs", { streamIdleTimeoutMs: 500 }],
  ])("end there (%s), and EventSource's reconnect is answered 200, not a 503 for a key backing off", async (_, cap) => {
    const origin = await testOrigin({
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
      body: "data: one\n\ndata: two\n\n",
      mode: "stream",
    });
    const testEnv = edgeEnv(origin.url, { origin: cap });
    const path = `/events-${crypto.randomUUID()}`;
    await useInCoordinators(testEnv, [path], systemClock);
    const [dc] = dataCenters(1, testEnv);
    const { response } = await dc!.fetch(path);
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    expect(decoder.decode((await reader.read()).value)).toBe("data: one\n\n");
    // The origin never ends the stream: herdless does, at its cap.
    await reader.read().catch(() => undefined);
    const reconnect = await dc!.fetch(path);
    expect(reconnect.response.status).toBe(200);
    expect(reconnect.response.headers.get("cache-status")).not.toMatch(/backoff/);
    await reconnect.response.body!.cancel();
    await origin.release();
  });
});

const MiB = 1024 * 1024;

/** Bytes `start` to `end` of the test origin's generated body. */
function generated(start: number, end: number): number[] {
  const out: number[] = [];
  for (let i = start; i <= end; i++) out.push(largeBodyByte(i));
  return out;
}

describe("video behind the Worker: Range on a key whose body streams from its fill", () => {
  it("a seek on a cold key is a 206 cut from the fill; the origin is asked for the whole video once", async () => {
    const size = 3 * MiB;
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60", "content-type": "video/mp4" },
      bodyBytes: size,
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    const { response } = await dc!.fetch("/clip.mp4", { headers: { range: "bytes=2000000-2000099" } });
    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe(`bytes 2000000-2000099/${size}`);
    expect(response.headers.get("content-length")).toBe("100");
    expect([...new Uint8Array(await response.arrayBuffer())]).toEqual(generated(2000000, 2000099));
    const requests = (await origin.stats()).requests;
    expect(requests).toHaveLength(1);
    expect(requests[0]!.headers.range).toBeUndefined();
  });

  it("a seek into a video too large to store is a 206, never a 200 of the whole file", async () => {
    const size = 4 * MiB;
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60", "content-type": "video/mp4" },
      bodyBytes: size,
    });
    const testEnv = edgeEnv(origin.url, { cache: { maxEntryBytes: MiB } });
    const path = `/film-${crypto.randomUUID()}.mp4`;
    await useInCoordinators(testEnv, [path], systemClock);
    const [dc] = dataCenters(1, testEnv);
    const { response } = await dc!.fetch(path, { headers: { range: "bytes=3000000-3000009" } });
    expect(response.status).toBe(206);
    expect(response.headers.get("content-range")).toBe(`bytes 3000000-3000009/${size}`);
    expect(response.headers.get("cache-status")).toMatch(/detail=too-large/);
    expect([...new Uint8Array(await response.arrayBuffer())]).toEqual(generated(3000000, 3000009));
  });
});

describe("a visitor who leaves a download too large to store", () => {
  it("does not make the key back off: the next visitor gets the file, not a 503", async () => {
    const size = 16 * MiB;
    const origin = await testOrigin({
      headers: { "cache-control": "max-age=60", "content-type": "video/mp4" },
      bodyBytes: size,
    });
    const testEnv = edgeEnv(origin.url, {
      cache: { maxEntryBytes: MiB },
      origin: { readAheadBytes: 0, streamIdleTimeoutMs: 1000 },
    });
    const path = `/film-${crypto.randomUUID()}.mp4`;
    await useInCoordinators(testEnv, [path], systemClock);
    const [dc] = dataCenters(1, testEnv);
    // The first visitor's player reads the start of the file and goes away (a closed tab).
    const { response } = await dc!.fetch(path);
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel();
    await vi.waitFor(async () => expect((await origin.stats()).inFlight).toBe(0), { timeout: 10_000, interval: 100 });
    const next = await dc!.fetch(path, { headers: { range: "bytes=0-9" } });
    expect(next.response.headers.get("cache-status")).not.toMatch(/backoff/);
    expect(next.response.status).toBe(206);
    await next.response.body!.cancel();
  });
});
