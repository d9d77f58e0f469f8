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
