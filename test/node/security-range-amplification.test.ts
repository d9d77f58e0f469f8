import type { ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, servingOrigin } from "./attack-kit.ts";

/**
 * RangeAmp's "small byte range" attack (Li et al., NDSS 2020) on a body too large to keep: a
 * cache that asks the origin for the whole body to cut a client's range from it makes the
 * origin send the whole file for each one-byte request.
 */

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const run of cleanup.splice(0)) await run();
});

/** 32 MiB: past the 1 MiB `cache.maxEntryBytes` the tests set, and past what loopback buffers hold. */
const SIZE = 32 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

interface Sent {
  url: string;
  range: string | undefined;
  bytes: number;
}

/** A static file server (Range honoured, as nginx and every static handler do) that records what it wrote for each request. */
async function fileOrigin(): Promise<{ url: string; sent: Sent[] }> {
  const sent: Sent[] = [];
  const url = await servingOrigin((req, res) => {
    const range = req.headers.range;
    const record: Sent = { url: req.url ?? "", range, bytes: 0 };
    res.on("close", () => sent.push(record));
    const suffix = /^bytes=-(\d+)$/.exec(range ?? "");
    const from = /^bytes=(\d+)-(\d*)$/.exec(range ?? "");
    if (suffix || from) {
      const start = suffix ? SIZE - Number(suffix[1]) : Number(from![1]);
      const end = from?.[2] ? Math.min(Number(from[2]), SIZE - 1) : SIZE - 1;
      const part = Buffer.alloc(end - start + 1, 0x61);
      record.bytes = part.length;
      res.writeHead(206, { "content-range": `bytes ${start}-${end}/${SIZE}`, "cache-control": "max-age=60" });
      res.end(part);
      return;
    }
    res.writeHead(200, { "content-length": String(SIZE), "cache-control": "max-age=60", "accept-ranges": "bytes" });
    pump(res, record);
  }, cleanup);
  return { url, sent };
}

/** Writes the file as fast as the connection takes it, counting what was written, until it ends or closes. */
function pump(res: ServerResponse, record: Sent): void {
  const more = () => {
    while (record.bytes < SIZE && !res.destroyed) {
      record.bytes += CHUNK.length;
      if (!res.write(CHUNK)) return void res.once("drain", more);
    }
    res.end();
  };
  more();
}

/** What the origin wrote for requests of `url`, once it has closed them all. */
async function written(origin: { sent: Sent[] }, count: number): Promise<Sent[]> {
  for (let i = 0; i < 200 && origin.sent.length < count; i++) await new Promise((r) => setTimeout(r, 10));
  return origin.sent;
}

describe("RangeAmp: a small range of a body too large to keep (Node)", () => {
  it("a one-byte range costs the origin that byte, not the whole body: asked again with its Range, and the key's next ranges go straight to the origin", async () => {
    const origin = await fileOrigin();
    const proxy = await herdless(origin.url, { cache: { maxEntryBytes: 1024 * 1024 } });
    cleanup.push(proxy.close);
    // The attacker: three one-byte requests for the file's last byte.
    for (let i = 0; i < 3; i++) {
      const part = await get(proxy.base, "/video.mp4", { headers: { range: "bytes=-1" } });
      expect(part.status).toBe(206);
      expect(part.headers["content-range"]).toBe(`bytes ${SIZE - 1}-${SIZE - 1}/${SIZE}`);
      expect(part.body).toBe("a");
    }
    const sent = await written(origin, 4);
    // The first one found out the body was too large to keep (its fetch of the whole let go at
    // once); each asked again with its Range, and the next ones went straight to the origin.
    expect(sent.filter((s) => s.range === undefined)).toHaveLength(1);
    expect(sent.filter((s) => s.range !== undefined)).toEqual([
      { url: "/video.mp4", range: "bytes=-1", bytes: 1 },
      { url: "/video.mp4", range: "bytes=-1", bytes: 1 },
      { url: "/video.mp4", range: "bytes=-1", bytes: 1 },
    ]);
    // Before: the whole 32 MiB, three times.
    expect(sent.reduce((total, s) => total + s.bytes, 0)).toBeLessThan(SIZE / 2);
    // The victim's plain GET still gets the whole file, shared by one fetch as before.
    const whole = await get(proxy.base, "/video.mp4");
    expect(whole.status).toBe(200);
    expect(whole.body.length).toBe(SIZE);
  });

  it("cache-busting queries (every request a cold key) cost the origin less than half the body each, not all of it", async () => {
    const origin = await fileOrigin();
    const proxy = await herdless(origin.url, { cache: { maxEntryBytes: 1024 * 1024 } });
    cleanup.push(proxy.close);
    for (let i = 0; i < 3; i++) {
      const part = await get(proxy.base, `/video.mp4?r=${i}`, { headers: { range: "bytes=-1" } });
      expect(part.status).toBe(206);
      expect(part.body).toBe("a");
    }
    const whole = (await written(origin, 6)).filter((s) => s.range === undefined);
    expect(whole).toHaveLength(3);
    // Each cold key's fetch of the whole body is let go of once its one reader left for its
    // own ranged request; before, it was read to the last byte (32 MiB each).
    for (const each of whole) expect(each.bytes).toBeLessThan(SIZE / 2);
  });
});
