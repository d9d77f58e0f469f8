import { MAX_ENTRY_BYTES_LIMIT } from "../../core/config/fields.ts";
import type { RedisConnection } from "./connection.ts";

/** Bodies above this are kept in chunk keys of this size, not in the entry's hash. */
export const REDIS_CHUNK_BYTES = 1024 * 1024;

const CHUNKS_PER_READ = 4;

/** Where a chunked body lives: its id, chunk count and length, as kept in the hash's `c`. */
export interface ChunkRef {
  id: string;
  chunks: number;
  bytes: number;
}

/** A new place for a body of `bytes` (above {@link REDIS_CHUNK_BYTES}). */
export function newChunkRef(bytes: number): ChunkRef {
  return { id: crypto.randomUUID(), chunks: Math.ceil(bytes / REDIS_CHUNK_BYTES), bytes };
}

export function formatRef(ref: ChunkRef): string {
  return `${ref.id} ${ref.chunks} ${ref.bytes}`;
}

/**
 * The ref in a hash's `c`, or undefined for one no herdless writes: a body of at most
 * {@link REDIS_CHUNK_BYTES} sits in `b`, none is above `cache.maxEntryBytes`' ceiling, and the
 * count is the length's. What Redis holds is anyone's (a hand edit, another app, damage): a
 * ref naming 4,000,000,000 chunks made the process that read it (or replaced or evicted its
 * entry) build that many key names, and it died out of memory; one naming more threw, a `500`
 * for every request of the page until the entry's physical TTL.
 */
export function parseRef(text: string): ChunkRef | undefined {
  const match = /^([0-9a-f-]{36}) (\d+) (\d+)$/.exec(text);
  if (!match) return undefined;
  const ref = { id: match[1]!, chunks: Number(match[2]), bytes: Number(match[3]) };
  const sound =
    ref.bytes > REDIS_CHUNK_BYTES &&
    ref.bytes <= MAX_ENTRY_BYTES_LIMIT &&
    ref.chunks === Math.ceil(ref.bytes / REDIS_CHUNK_BYTES);
  return sound ? ref : undefined;
}

/**
 * The chunk keys of large bodies, `<prefix>chunk:{<id>}:<n>`, on the bulk connection. One
 * command per chunk, one after another: each stays far within the connection's command
 * timeout and no single command holds Redis (single-threaded) for long.
 */
export class StoreChunks {
  constructor(
    private readonly bulk: RedisConnection,
    private readonly prefix: string,
  ) {}

  private keys(ref: ChunkRef): string[] {
    // One hash tag per body: its chunks share a slot, so MGET and DEL span them on Redis Cluster too.
    return Array.from({ length: ref.chunks }, (_, n) => `${this.prefix}chunk:{${ref.id}}:${n}`);
  }

  async write(ref: ChunkRef, body: Uint8Array, ttlMs: number): Promise<void> {
    for (const [n, chunkKey] of this.keys(ref).entries()) {
      const part = body.subarray(n * REDIS_CHUNK_BYTES, (n + 1) * REDIS_CHUNK_BYTES);
      const bytes = Buffer.from(part.buffer, part.byteOffset, part.byteLength);
      await this.bulk.run("put", (client) => client.set(chunkKey, bytes, "PX", ttlMs));
    }
  }

  /**
   * The chunks in a few reads of {@link CHUNKS_PER_READ}, for the same reason; `"gone"` once
   * one is gone (the entry was replaced meanwhile), `"damaged"` at the first of another length
   * than the ref says (no write leaves one: the rest is not read, whatever its size).
   */
  async read(ref: ChunkRef): Promise<Buffer[] | "gone" | "damaged"> {
    const keys = this.keys(ref);
    const parts: Buffer[] = [];
    for (let n = 0; n < keys.length; n += CHUNKS_PER_READ) {
      const batch = keys.slice(n, n + CHUNKS_PER_READ);
      const read = await this.bulk.run("get", (client) => client.mgetBuffer(...batch));
      for (const part of read) {
        if (part === null) return "gone";
        const offset = parts.length * REDIS_CHUNK_BYTES;
        if (part.byteLength !== Math.min(REDIS_CHUNK_BYTES, ref.bytes - offset)) return "damaged";
        parts.push(part);
      }
    }
    return parts;
  }

  /** Deletes a body's chunks; never fails (they carry the entry's physical TTL anyway). */
  async delete(ref: ChunkRef | undefined): Promise<void> {
    if (ref) await this.bulk.run("delete", (client) => client.del(...this.keys(ref))).catch(() => undefined);
  }
}
