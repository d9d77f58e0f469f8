/** Read access to headers: satisfied by the Web `Headers` class and by cheap adapters (Node). */
export interface HeaderReader {
  get(name: string): string | null;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1): never stored, never forwarded. */
export const HOP_BY_HOP = new Set([
  "connection",
  // RFC 7540 §3.2.1: the settings of an h2c upgrade, for this connection only (the Upgrade it
  // goes with is never passed on); sent on alone, an origin refused the request with a 400.
  "http2-settings",
  "keep-alive",
  "proxy-authenticate",
  // RFC 9110 §11.7.3: it answers the proxy authentication of the next client only, like Proxy-Authenticate.
  "proxy-authentication-info",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Wraps a plain header list (names lowercased) as a {@link HeaderReader}. */
export function headerList(pairs: readonly (readonly [string, string])[]): HeaderReader {
  return {
    get(name: string): string | null {
      const lower = name.toLowerCase();
      const values = pairs.filter(([n]) => n === lower).map(([, v]) => v);
      return values.length === 0 ? null : values.join(", ");
    },
  };
}

/** Joins body chunks read from a stream into one byte array of `total` bytes. */
export function concatBytes(chunks: readonly Uint8Array[], total: number): Uint8Array {
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/**
 * Chunks already in hand are passed on joined, up to this many bytes: each one handed on is a
 * promise round trip per stream it passes through (and in workerd a message of its own across
 * RPC and a write to the client's socket), dearer than a copy. A fetched body comes in chunks
 * of a few KB (5,000 for 20 MB in workerd); an origin that flushes each byte gives one per byte.
 */
const JOIN_BYTES = 256 * 1024;

/**
 * What an origin body read ahead of its one client is passed on joined up to: small chunks
 * (an origin's flushes, a byte each at worst) join, while a chunk as large as a socket read
 * passes alone, as read, and the client's pace is still counted read by read.
 */
export const ORIGIN_JOIN_BYTES = 64 * 1024;

/**
 * The chunks from `index` on (before `end`) joined into one, up to `maxBytes` (always at least
 * one chunk, passed as it is when alone), and how many.
 */
export function joined(
  chunks: Uint8Array[],
  index: number,
  end: number,
  maxBytes = JOIN_BYTES,
): { chunk: Uint8Array; count: number } {
  let count = 1;
  let bytes = chunks[index]!.byteLength;
  while (index + count < end && bytes + chunks[index + count]!.byteLength <= maxBytes) {
    bytes += chunks[index + count]!.byteLength;
    count += 1;
  }
  const chunk = count === 1 ? chunks[index]! : concatBytes(chunks.slice(index, index + count), bytes);
  return { chunk, count };
}
