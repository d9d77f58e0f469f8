/**
 * A real site behind herdless on Node: what an application's pages need to reach their
 * visitors as the origin sent them. The Worker twin is test/cloudflare/edge-real-apps.test.ts.
 */
import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { eventStreamOrigin, get, herdless, readUntil, sendAsTaken, servingOrigin } from "./attack-kit.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0)) await close();
});

describe("server-sent events on a cached route (no bypass)", () => {
  it("reach the client as the origin writes them, not after origin.timeoutMs as a 504", async () => {
    const open: ServerResponse[] = [];
    const origin = await servingOrigin((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write("data: one\n\n");
      // The stream stays open, as an event stream does while its page is.
      open.push(res);
    }, cleanup);
    cleanup.unshift(async () => void open.forEach((res) => res.end()));
    const h = await herdless(origin, { origin: { timeoutMs: 1000 } });
    cleanup.unshift(h.close);
    const text = await readUntil(h.base, "/events", "data: one");
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    expect(text).toMatch(/\r\ncontent-type: text\/event-stream\r\n/);
    expect(text).toContain("data: one\n\n");
    expect(open).toHaveLength(1);
    // The stream's origin call is still open: the event left before its end.
    expect(open[0]!.writableEnded).toBe(false);
  });
});

describe("a page the origin flushes in parts (streamed rendering: its head first, the rest once rendered)", () => {
  it.each<[string, Record<string, string>]>([
    ["cacheable", { "cache-control": "max-age=60" }],
    ["uncacheable", {}],
  ])("reaches the visitor as it is flushed (%s), not once the origin finished", async (_, headers) => {
    const open: ServerResponse[] = [];
    const origin = await servingOrigin((_req, res) => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", ...headers });
      res.write("<html><head><title>shop</title></head><body>");
      // The rest of the page is still being rendered.
      open.push(res);
    }, cleanup);
    const h = await herdless(origin);
    cleanup.unshift(h.close);
    // Bounded: before the fix the visitor got nothing until the origin ended the page.
    const text = await readUntil(h.base, "/shop", "<title>shop</title>", 5_000);
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    expect(text).toContain("<title>shop</title>");
    expect(open).toHaveLength(1);
    expect(open[0]!.writableEnded).toBe(false);
    open[0]!.end("rendered</body></html>");
    if (headers["cache-control"]) {
      // Stored once complete, as a page sent in one go is.
      await vi.waitFor(async () =>
        expect((await get(h.base, "/shop")).headers["cache-status"]).toMatch(/^herdless; hit/),
      );
      expect((await get(h.base, "/shop")).body).toBe(
        "<html><head><title>shop</title></head><body>rendered</body></html>",
      );
      expect(open).toHaveLength(1);
    }
  });
});

describe("server-sent events past origin.streamTimeoutMs, or silent for origin.streamIdleTimeoutMs", () => {
  it.each([
    ["streamTimeoutMs", { streamTimeoutMs: 300 }],
    ["streamIdleTimeoutMs", { streamIdleTimeoutMs: 300 }],
  ])("end there (%s), and EventSource's reconnect is answered 200, not a 503 for a key backing off", async (_, cap) => {
    const { url: origin } = await eventStreamOrigin(cleanup);
    const h = await herdless(origin, { origin: cap });
    cleanup.unshift(h.close);
    // Read until herdless ends the stream at its cap (the origin never would).
    const first = await readUntil(h.base, "/events", "never arrives");
    expect(first).toMatch(/^HTTP\/1\.1 200 [^]*data: 0\n\n/);
    const reconnect = await readUntil(h.base, "/events", "data: 1");
    expect(reconnect).toMatch(/^HTTP\/1\.1 200 /);
    expect(reconnect).toContain("data: 1\n\n");
  });
});

const MiB = 1024 * 1024;

/** A video of `bytes` (byte i is `i % 251`) with a max-age, sent as fast as herdless reads it; `closed` counts calls whose connection ended. */
async function videoOrigin(
  bytes: number,
): Promise<{ url: string; ranges: (string | undefined)[]; closed: () => number }> {
  const video = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) video[i] = i % 251;
  const ranges: (string | undefined)[] = [];
  let closed = 0;
  const url = await servingOrigin((req, res) => {
    ranges.push(req.headers.range);
    res.on("close", () => closed++);
    res.writeHead(200, { "content-type": "video/mp4", "content-length": String(bytes), "cache-control": "max-age=60" });
    sendAsTaken(res, bytes, video);
  }, cleanup);
  return { url, ranges, closed: () => closed };
}

/** Bytes `start` to `end` of {@link videoOrigin}'s video, as a latin1 string (what `get` reads). */
function videoPart(start: number, end: number): string {
  return Buffer.from(Array.from({ length: end - start + 1 }, (_, i) => (start + i) % 251)).toString("latin1");
}

describe("video behind herdless: Range on a key whose body streams from its fill", () => {
  it("a seek on a cold key is a 206 cut from the fill, stored whole once for the next visitor", async () => {
    const origin = await videoOrigin(3 * MiB);
    const h = await herdless(origin.url);
    cleanup.unshift(h.close);
    const seek = await get(h.base, "/clip.mp4", { headers: { range: "bytes=2000000-2000099" } });
    expect(seek.status).toBe(206);
    expect(seek.headers["content-range"]).toBe(`bytes 2000000-2000099/${3 * MiB}`);
    expect(seek.headers["content-length"]).toBe("100");
    expect(seek.body).toBe(videoPart(2000000, 2000099));
    expect(seek.headers["cache-status"]).toMatch(/fwd=uri-miss; fwd-status=200/);
    const past = await get(h.base, "/clip2.mp4", { headers: { range: `bytes=${3 * MiB}-` } });
    expect([past.status, past.headers["content-range"]]).toEqual([416, `bytes */${3 * MiB}`]);
    const next = await get(h.base, "/clip.mp4", { headers: { range: "bytes=-10" } });
    expect([next.status, next.body]).toEqual([206, videoPart(3 * MiB - 10, 3 * MiB - 1)]);
    // The 416's fill still reads the video whole for the next visitor.
    expect((await get(h.base, "/clip2.mp4")).body).toBe(videoPart(0, 3 * MiB - 1));
    // One fill each, asked for the whole video.
    expect(origin.ranges).toEqual([undefined, undefined]);
  });

  it("a seek into a video too large to store is a 206 each time, never a 200 of the whole file", async () => {
    const origin = await videoOrigin(4 * MiB);
    const h = await herdless(origin.url, { cache: { maxEntryBytes: MiB }, origin: { readAheadBytes: 0 } });
    cleanup.unshift(h.close);
    for (const [range, start, end] of [
      ["bytes=100-199", 100, 199],
      ["bytes=3000000-3000009", 3000000, 3000009],
    ] as const) {
      const seek = await get(h.base, "/film.mp4", { headers: { range } });
      expect(seek.status).toBe(206);
      expect(seek.headers["content-range"]).toBe(`bytes ${start}-${end}/${4 * MiB}`);
      expect(seek.body).toBe(videoPart(start, end));
      expect(seek.headers["cache-status"]).toMatch(/detail=too-large/);
    }
    // The cold key's one fetch asked for the whole file; past cache.maxEntryBytes each seek
    // then asks the origin for its own part (never the whole file again for ten bytes).
    expect(origin.ranges).toEqual([undefined, "bytes=100-199", "bytes=3000000-3000009"]);
  });
});

describe("a visitor who leaves a download too large to store", () => {
  it("does not make the key back off: the next visitor gets the file, not a 503", async () => {
    const origin = await videoOrigin(8 * MiB);
    const h = await herdless(origin.url, { cache: { maxEntryBytes: MiB }, origin: { readAheadBytes: 0 } });
    cleanup.unshift(h.close);
    // The first visitor's player reads the start of the file and goes away (a closed tab).
    const first = await readUntil(h.base, "/film.mp4", videoPart(0, 20));
    expect(first).toMatch(/^HTTP\/1\.1 200 /);
    await vi.waitFor(() => expect(origin.closed()).toBe(1));
    const next = await get(h.base, "/film.mp4");
    expect(next.status).toBe(200);
    expect(next.body.length).toBe(8 * MiB);
    expect(next.headers["cache-status"]).not.toMatch(/backoff/);
  });

  it("nor does a HEAD on it (a link checker, `curl -I`), filled with a GET whose body no one reads", async () => {
    const origin = await videoOrigin(8 * MiB);
    const h = await herdless(origin.url, { cache: { maxEntryBytes: MiB }, origin: { readAheadBytes: 0 } });
    cleanup.unshift(h.close);
    const head = await get(h.base, "/film.mp4", { method: "HEAD" });
    expect([head.status, head.headers["content-length"], head.body]).toEqual([200, String(8 * MiB), ""]);
    await vi.waitFor(() => expect(origin.closed()).toBe(1));
    const next = await get(h.base, "/film.mp4", { headers: { range: "bytes=0-9" } });
    expect(next.headers["cache-status"]).not.toMatch(/backoff/);
    expect([next.status, next.body]).toEqual([206, videoPart(0, 9)]);
  });
});
