/** Helpers of the large-body tests: the generated body's hash, and a body read to its hash. */
import { largeBodyByte } from "./origin-protocol.ts";

function hex(digest: ArrayBuffer): string {
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function expectedHash(bytes: number): Promise<string> {
  const body = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) body[i] = largeBodyByte(i);
  return hex(await crypto.subtle.digest("SHA-256", body));
}

/** Hashes the rest of a body whose first chunk was read already; resolves with the hash and the length. */
export async function finish(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: Uint8Array,
): Promise<{ hash: string; bytes: number }> {
  const digest = new crypto.DigestStream("SHA-256");
  const writer = digest.getWriter();
  // The digest is fed in 1 MiB pieces: one write per chunk read (a few KB each) costs more than the hashing.
  const piece = new Uint8Array(1024 * 1024);
  let filled = 0;
  let bytes = 0;
  const add = async (chunk: Uint8Array) => {
    bytes += chunk.byteLength;
    while (chunk.byteLength > 0) {
      const n = Math.min(chunk.byteLength, piece.byteLength - filled);
      piece.set(chunk.subarray(0, n), filled);
      filled += n;
      chunk = chunk.subarray(n);
      if (filled === piece.byteLength) {
        await writer.write(piece.slice());
        filled = 0;
      }
    }
  };
  await add(first);
  for (let read = await reader.read(); !read.done; read = await reader.read()) await add(read.value);
  if (filled > 0) await writer.write(piece.slice(0, filled));
  await writer.close();
  return { hash: hex(await digest.digest), bytes };
}
