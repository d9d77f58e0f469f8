import { RANGE_FIELDS } from "../core/http/range.ts";
import type { FetchLike } from "../core/origin/origin-client.ts";
import { answerOf } from "./workerd-fetch.ts";

/**
 * The Worker's origin `fetch`: workerd's own, except that an interim answer is looked past.
 *
 * workerd's `fetch()` hands an origin's `102 Processing` or `103 Early Hints` (RFC 9110
 * §15.2) over as if it were the final response, and gives as its body the rest of the
 * connection: the final answer's status line, header section and framed content, unparsed.
 * RFC 9110 §15.2 asks a proxy to forward or drop interim responses and serve the final one, so
 * the final answer is read back out of that body ({@link finalAfterInterim}); when it cannot be
 * (malformed, a coding workerd would have decoded but this cannot), the interim status stays
 * and fetchOrigin answers a clean 502 as before. Measured on workerd 2026-04-26.
 *
 * @example
 * new KeyCoordinator({ ...options, fetch: originFetch, decodes: workerdDecoding });
 */
export const originFetch: FetchLike = async (url, init) => {
  if ((init.method ?? "GET").toUpperCase() === "HEAD") return headOf(url, init);
  const response = await answerOf(url, init);
  if (response.status < 100 || response.status > 199 || response.status === 101 || !response.body) return response;
  const final = await finalAfterInterim(response.body, init.method ?? "GET").catch(() => undefined);
  return final ?? response;
};

/**
 * A HEAD, asked of the origin as a GET whose body is never read: the answer's head is the
 * HEAD's (RFC 9110 §9.3.2), and the body's bytes go with the connection, which workerd does
 * not reuse once a body is cancelled. workerd hands a HEAD's `103 Early Hints` over as final
 * and without a body (a HEAD's answer has none), and leaves the real answer's head on its
 * pooled connection, where the next request to the origin, anyone's, took it as its own: a
 * visitor's relayed HEAD gave its `Set-Cookie` to the next visitor, and a fill could store it
 * over another page's first bytes. As a GET, the answer after the 103 is read back as any.
 */
async function headOf(url: string, init: Parameters<FetchLike>[1]): Promise<Response> {
  const response = await originFetch(url, { ...init, method: "GET", headers: withoutRange(init.headers) });
  await response.body?.cancel().catch(() => undefined);
  // A status no Response can be made with (the 1xx left when the final answer is unreadable) stays as it came.
  if (response.status < 200) return response;
  return new Response(null, { status: response.status, statusText: response.statusText, headers: response.headers });
}

/**
 * A HEAD's fields for the GET it is asked as, without a Range: RFC 9110 §14.2 defines range
 * handling for GET alone, so an origin ignores a HEAD's Range and answers it `200` with the
 * whole length. Sent on with the GET, a client's `HEAD` with `Range: bytes=0-99` (a download
 * manager's probe, a media player's) got a `206` and the part's length on the Worker, a `416`
 * past the end, where Node and the origin answer `200` with the representation's length.
 */
function withoutRange(headers: HeadersInit | undefined): HeadersInit | undefined {
  if (headers === undefined) return undefined;
  const list = headers instanceof Headers ? [...headers] : Array.isArray(headers) ? headers : Object.entries(headers);
  return list.filter(([name]) => !RANGE_FIELDS.includes(name!.toLowerCase())) as [string, string][];
}

/** The longest header section read back: past it the bytes are not an HTTP/1.1 answer worth parsing. */
const MAX_HEAD_BYTES = 64 * 1024;
const CRLF = [13, 10];

/**
 * The final HTTP/1.1 response in `raw` (RFC 9112 §4-§6), after any further interim ones:
 * its body framed by chunked Transfer-Encoding, Content-Length, or the end of the stream.
 * A `gzip` body is decoded, as workerd's fetch decodes it (content-decoding.ts); undefined
 * for anything it cannot read like workerd would (a `br` body, a malformed head).
 *
 * @example
 * await finalAfterInterim(streamOf("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"), "GET"); // a 200 Response with body "ok"
 */
export async function finalAfterInterim(
  raw: ReadableStream<Uint8Array>,
  method: string,
): Promise<Response | undefined> {
  const bytes = new ByteReader(raw.getReader());
  for (;;) {
    const head = await bytes.head();
    if (!head) return bytes.cancel();
    const parsed = parseHead(head);
    if (!parsed) return bytes.cancel();
    const { status, headers } = parsed;
    if (status >= 100 && status <= 199 && status !== 101) continue;
    if (status < 200 || status > 599) return bytes.cancel();
    const coding = headers.get("content-encoding");
    if (coding === "br") return bytes.cancel();
    if (method === "HEAD" || status === 204 || status === 304) {
      await bytes.cancel();
      return new Response(null, { status, headers });
    }
    let body = framedBody(bytes, headers);
    if (coding === "gzip") body = body.pipeThrough(new DecompressionStream("gzip"));
    return new Response(body, { status, headers });
  }
}

/**
 * A head read as strictly as workerd's parser reads one: a name that is not a token (`X-A : 1`), a
 * folded line, a value Headers refuses, Content-Lengths that disagree or a transfer coding but
 * chunked refuse the whole answer (dropped, `Cache-Control : private` left a page shared).
 */
function parseHead(head: string): { status: number; headers: Headers } | undefined {
  const [statusLine = "", ...lines] = head.split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine);
  if (!match) return undefined;
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0 || !FIELD_NAME.test(line.slice(0, colon))) return undefined;
    try {
      headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
    } catch {
      return undefined;
    }
  }
  const codings = headers.get("transfer-encoding")?.split(",") ?? []; // workerd: "unknown transfer encoding"
  if (codings.some((coding) => coding.trim().toLowerCase() !== "chunked")) return undefined;
  const length = headers.get("content-length");
  // RFC 9112 §6.1: a sender must not send both; refused, as Node's parser refuses it (a smuggling shape).
  if (length !== null && codings.length > 0) return undefined;
  if (length !== null) {
    const [one = "", ...others] = new Set(length.split(",").map((value) => value.trim())); // RFC 9112 §6.3
    if (others.length > 0 || !/^\d+$/.test(one)) return undefined;
    headers.set("content-length", one);
  }
  return { status: Number(match[1]), headers };
}

const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // RFC 9110 §5.1 field-name = token

/** RFC 9112 §6.3: chunked (the one coding parseHead lets by, over any Content-Length), else Content-Length, else to the end. */
function framedBody(bytes: ByteReader, headers: Headers): ReadableStream<Uint8Array> {
  if (headers.has("transfer-encoding")) {
    headers.delete("transfer-encoding");
    headers.delete("content-length");
    return bytes.stream(() => bytes.chunk());
  }
  const length = headers.get("content-length");
  if (length !== null && /^\d+$/.test(length)) {
    let left = Number(length);
    return bytes.stream(async () => {
      if (left === 0) return undefined;
      const piece = await bytes.upTo(left);
      if (!piece) throw new Error(`origin body ended ${left} bytes short`);
      left -= piece.byteLength;
      return piece;
    });
  }
  return bytes.stream(() => bytes.upTo(Infinity));
}

/** A cursor over a byte stream: header sections, chunks and runs of bytes, then a cancel. */
class ByteReader {
  private buffer = new Uint8Array(0);
  private ended = false;
  /** Bytes of the current chunk still to hand on (chunked framing). */
  private chunkLeft = 0;
  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /**
   * The next header section (up to the empty line, excluded), as text; undefined at the end or
   * past the limit. Read as UTF-8, as workerd reads the head of an answer it parses itself (a
   * byte that is not UTF-8 becomes U+FFFD): read as latin1, a UTF-8 `filename="日本.pdf"`
   * was one character per byte, which workerd then wrote out as UTF-8 again, mangled.
   */
  async head(): Promise<string | undefined> {
    for (;;) {
      const end = indexOf(this.buffer, [...CRLF, ...CRLF]);
      if (end >= 0) return UTF8.decode(this.take(end + 4).subarray(0, end));
      if (this.buffer.byteLength > MAX_HEAD_BYTES || !(await this.more())) return undefined;
    }
  }

  /**
   * RFC 9112 §7.1: the next piece of chunk data, as it arrives; undefined after the last chunk
   * and its trailer section. A chunk is handed on in the pieces the connection brings, never
   * held until whole: its size is the origin's to declare (one chunk of a whole file, or
   * `fffffffff`), and held whole it was all in memory at once, grown by a copy per read, its
   * first byte reaching no reader (nor the deadline's watch) until its last had come.
   */
  async chunk(): Promise<Uint8Array | undefined> {
    if (this.chunkLeft === 0) {
      const sizeLine = await this.line();
      const digits = sizeLine.split(";")[0]!.trim(); // RFC 9112 §7.1: 1*HEXDIG, not what parseInt lets by (`5x`, `+5`)
      if (!/^[0-9A-Fa-f]{1,15}$/.test(digits)) throw new Error(`malformed chunk size ${JSON.stringify(sizeLine)}`);
      const size = Number.parseInt(digits, 16);
      if (size === 0) {
        while ((await this.line()) !== "");
        return undefined;
      }
      this.chunkLeft = size;
    }
    const data = await this.upTo(this.chunkLeft);
    if (!data) throw new Error("origin body ended inside a chunk");
    this.chunkLeft -= data.byteLength;
    if (this.chunkLeft === 0) await this.exactly(2);
    return data;
  }

  /** What is buffered or arrives next, at most `max` bytes; undefined at the end. */
  async upTo(max: number): Promise<Uint8Array | undefined> {
    if (this.buffer.byteLength === 0 && !(await this.more())) return undefined;
    return this.take(Math.min(max, this.buffer.byteLength));
  }

  /** A stream pulling `next` until it gives undefined, cancelling the source then or when read no further. */
  stream(next: () => Promise<Uint8Array | undefined>): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const piece = await next();
        if (piece === undefined) {
          controller.close();
          await this.cancel();
        } else if (piece.byteLength > 0) controller.enqueue(piece);
      },
      cancel: () => this.cancel(),
    });
  }

  async cancel(): Promise<undefined> {
    await this.reader.cancel().catch(() => undefined);
    return undefined;
  }

  private async line(): Promise<string> {
    for (;;) {
      const end = indexOf(this.buffer, CRLF);
      if (end >= 0) return latin1(this.take(end + 2).subarray(0, end));
      if (this.buffer.byteLength > MAX_HEAD_BYTES || !(await this.more()))
        throw new Error("origin body ended in a chunk line");
    }
  }

  private async exactly(n: number): Promise<Uint8Array> {
    while (this.buffer.byteLength < n) if (!(await this.more())) throw new Error("origin body ended inside a chunk");
    return this.take(n);
  }

  private take(n: number): Uint8Array {
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  private async more(): Promise<boolean> {
    if (this.ended) return false;
    const { done, value } = await this.reader.read();
    if (done) {
      this.ended = true;
      return false;
    }
    const joined = new Uint8Array(this.buffer.byteLength + value.byteLength);
    joined.set(this.buffer);
    joined.set(value, this.buffer.byteLength);
    this.buffer = joined;
    return true;
  }
}

function indexOf(haystack: Uint8Array, needle: number[]): number {
  outer: for (let i = 0; i + needle.length <= haystack.byteLength; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

const UTF8 = new TextDecoder();

/** A chunk line's bytes, one character per byte (RFC 9110 §5.5 obs-text included). */
function latin1(bytes: Uint8Array): string {
  // Not TextDecoder("latin1"): the Encoding Standard makes that windows-1252, which remaps 0x80-0x9F.
  let text = "";
  for (let i = 0; i < bytes.byteLength; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return text;
}
