import { describe, expect, it } from "vitest";
import { dataCenter, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

/**
 * An upload's length on its way to the origin (Worker). Past the 64 KiB read before the
 * origin call (core/origin/upload.ts) an upload is streamed, and workerd sent a stream of
 * unknown length chunked: a 70,000-byte PUT reached the origin without its Content-Length,
 * which an origin that needs one refuses (an S3-style PUT's `411`) or misreads (a WSGI app's
 * CONTENT_LENGTH). The Node twin is test/node/upload-abuse.test.ts.
 */
const SIZE = 70_000;

/** A client's body that sends `bytes` in 10,000-byte pieces, then ends. */
function bodyOf(bytes: number): ReadableStream<Uint8Array> {
  let left = bytes;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left === 0) return controller.close();
      const piece = Math.min(left, 10_000);
      left -= piece;
      controller.enqueue(new Uint8Array(piece).fill(97));
    },
  });
}

async function setup() {
  const origin = await testOrigin({ mode: "sink" });
  const dc = dataCenter(`upload-${crypto.randomUUID()}`, edgeEnv(origin.url), undefined, { ownIsolate: true });
  return { origin, dc };
}

describe("an upload's length (Worker)", () => {
  it("a 70,000-byte PUT reaches the origin with its Content-Length and every byte, not chunked", async () => {
    const { origin, dc } = await setup();
    const put = await dc.get("/bucket/object", {
      method: "PUT",
      body: bodyOf(SIZE),
      headers: { "content-type": "application/octet-stream", "content-length": String(SIZE) },
    });
    expect(put.status).toBe(200);
    const [seen] = (await origin.stats()).requests;
    expect(seen!.headers["content-length"]).toBe(String(SIZE));
    expect(seen!.headers["transfer-encoding"]).toBeUndefined();
    expect(seen!.received).toEqual({ bytes: SIZE, complete: true });
  });

  it("a chunked upload, whose client declared no length, stays chunked", async () => {
    const { origin, dc } = await setup();
    const post = await dc.get("/form", { method: "POST", body: bodyOf(SIZE) });
    expect(post.status).toBe(200);
    const [seen] = (await origin.stats()).requests;
    expect(seen!.headers["content-length"]).toBeUndefined();
    expect(seen!.headers["transfer-encoding"]).toBe("chunked");
    expect(seen!.received).toEqual({ bytes: SIZE, complete: true });
  });

  it("a Content-Length beside Transfer-Encoding: chunked frames nothing (RFC 9112 §6.3): the upload goes whole, chunked", async () => {
    const { origin, dc } = await setup();
    for (const size of [100, SIZE]) {
      const post = await dc.get(`/both/${size}`, {
        method: "POST",
        body: bodyOf(size),
        headers: { "content-length": "5", "transfer-encoding": "chunked" },
      });
      expect(post.status).toBe(200);
    }
    const [small, large] = (await origin.stats()).requests;
    // A body read whole goes with its own length, one streamed goes chunked: never the 5 declared.
    expect([small!.headers["content-length"], small!.received]).toEqual(["100", { bytes: 100, complete: true }]);
    expect([large!.headers["content-length"], large!.headers["transfer-encoding"]]).toEqual([undefined, "chunked"]);
    expect(large!.received).toEqual({ bytes: SIZE, complete: true });
  });

  it("a client that sends fewer bytes than it declared never has them passed on as a whole upload", async () => {
    const { origin, dc } = await setup();
    // 66,000 bytes of the 70,000 it declared, then its body ends once the origin is reading it.
    let end!: () => void;
    const ended = new Promise<void>((resolve) => (end = resolve));
    const body = bodyOf(SIZE - 4_000).pipeThrough(new TransformStream<Uint8Array, Uint8Array>({ flush: () => ended }));
    const put = dc.get("/bucket/short", { method: "PUT", body, headers: { "content-length": String(SIZE) } });
    await origin.waitFor({ count: 1 });
    end();
    // The client's body is at fault: a 408 as for a client that left mid-upload, not an origin failure.
    expect((await put).status).toBe(408);
    const [seen] = (await origin.stats()).requests;
    expect(seen!.headers["content-length"]).toBe(String(SIZE));
    expect(seen!.received?.complete).toBe(false);
    // A body short of its length within the 64 KiB read first never reaches the origin: a 400 naming it.
    const small = await dc.get("/bucket/small", {
      method: "PUT",
      body: bodyOf(1_000),
      headers: { "content-length": "2000" },
    });
    expect(small.status).toBe(400);
    expect(small.body).toContain("came to 1000 bytes, not the 2000 its Content-Length declares");
    expect(await origin.count()).toBe(1);
  });
});
