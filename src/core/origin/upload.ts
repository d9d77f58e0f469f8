import type { HerdlessError } from "../errors.ts";
import { concatBytes } from "../http/http.ts";
import { freeUploadBytes, holdUploadBytes, uploadBudgetSpent } from "./upload-budget.ts";
import { misframed, StreamedUpload, type UploadWatch } from "./upload-stream.ts";

/**
 * How much of a client's upload is read before its request takes an origin permit. Most
 * uploads (a login, a form, a JSON call) fit and reach the origin whole, at the origin's
 * pace, as nginx's `proxy_request_buffering` does; a client that sends its body slowly, or
 * never finishes it, then holds its own connection and nothing of the origin's. Two such
 * POSTs held both permits of `origin.maxConcurrency: 2` (every visitor's cold miss a `503`)
 * and, timing out at `origin.timeoutMs`, were counted as a sick origin. Larger bodies are
 * streamed (memory stays bounded per connection); see {@link Upload}.
 */
export const UPLOAD_BUFFER_BYTES = 64 * 1024;

/**
 * A request body as it goes to the origin:
 * - `whole`: all of it, read before the origin call;
 * - `streamed`: larger than {@link UPLOAD_BUFFER_BYTES}, or arrived while the uploads together
 *   hold their budget (upload-budget.ts): what was read (at least its first bytes), then the
 *   rest as it arrives ({@link StreamedUpload}); `pending()` is true until the client has sent
 *   its last byte, so a call that fails meanwhile is known to have waited on the client, not
 *   on the origin;
 * - `broken`: the client's body failed before its end (the client left, or its framing broke).
 *
 * `release()` gives back the budget the body holds and stops watching a streamed one: call it
 * once the origin call is over.
 */
export type Upload = { release: () => void } & (
  | { kind: "whole"; body: Uint8Array | null }
  | {
      kind: "streamed";
      body: ReadableStream<Uint8Array>;
      pending: () => boolean;
      /** Why herdless cut its client off as too slow, if it did. */
      cutOff: () => HerdlessError | undefined;
      /** Aborts once the client's body failed or was cut: the origin call must stop ({@link StreamedUpload.signal}). */
      signal: AbortSignal;
    }
  | { kind: "broken"; message: string }
);

/**
 * Reads a client's body up to `limit` bytes, before anything is asked of the origin: its
 * request asks for a permit only once the body is all in, or once `limit` bytes of it (or, past
 * the budget, its first bytes) are. Each byte read counts against the budget until the
 * origin has it; a client that has sent nothing holds nothing. `watch` cuts a streamed upload
 * that holds its permit back while others queue for one ({@link StreamedUpload}).
 *
 * @example
 * const upload = await readUpload(request.body, watch);
 * try { if (upload.kind === "whole") send(upload.body); } finally { upload.release(); }
 */
export async function readUpload(
  body: ReadableStream<Uint8Array> | Uint8Array | null | undefined,
  watch?: UploadWatch,
  limit = UPLOAD_BUFFER_BYTES,
): Promise<Upload> {
  if (!body || body instanceof Uint8Array) return { kind: "whole", body: body ?? null, release: () => undefined };
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done && total !== (watch?.declaredBytes ?? total)) {
        freeUploadBytes(total);
        return { kind: "broken", message: misframed(total, watch?.declaredBytes), release: () => undefined };
      }
      if (done) return whole(concatBytes(chunks, total));
      if (value.byteLength === 0) continue;
      chunks.push(value);
      total += value.byteLength;
      holdUploadBytes(value.byteLength);
      if (total > limit || uploadBudgetSpent()) return streamed(new StreamedUpload(chunks, reader, limit, watch));
    }
  } catch (error) {
    freeUploadBytes(total);
    return { kind: "broken", message: `the request body ended early (${errorText(error)})`, release: () => undefined };
  }
}

/**
 * The length a request's `Content-Length` declares (RFC 9110 §8.6: digits alone), if it is
 * one: what its body must come to.
 *
 * @example
 * declaredLength("70000"); // 70000
 * declaredLength(null); // undefined
 */
export function declaredLength(value: string | null): number | undefined {
  return value !== null && /^\d{1,15}$/.test(value) ? Number(value) : undefined;
}

/** A body read to its end, held (and charged) until its origin call is over. */
function whole(body: Uint8Array): Upload {
  let held = true;
  const release = () => {
    if (held) freeUploadBytes(body.byteLength);
    held = false;
  };
  return { kind: "whole", body, release };
}

function streamed(upload: StreamedUpload): Upload {
  return {
    kind: "streamed",
    body: upload.stream,
    pending: () => upload.pending(),
    cutOff: () => upload.cutOff(),
    signal: upload.signal,
    release: () => upload.release(),
  };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
