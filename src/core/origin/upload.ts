import { concatBytes } from "../http/http.ts";

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
 * What the uploads being read before their origin call may hold together, per process or
 * Worker isolate (an isolate has 128 MB): 128 at once. Past it an upload is streamed as it
 * arrives, as a large one is, so a crowd of slow uploads cannot exhaust memory.
 */
export const UPLOAD_BUDGET_BYTES = 8 * 1024 * 1024;
let reservedBytes = 0;

/**
 * A request body as it goes to the origin:
 * - `whole`: all of it, read before the origin call;
 * - `streamed`: larger than {@link UPLOAD_BUFFER_BYTES} (or past {@link UPLOAD_BUDGET_BYTES}):
 *   what was read, then the rest as it arrives; `pending()` is true until the client has sent
 *   its last byte, so a call that fails meanwhile is known to have waited on the client, not
 *   on the origin;
 * - `broken`: the client's body failed before its end (the client left, or its framing broke).
 *
 * `release()` gives back the budget the read took: call it once the origin call is over.
 */
export type Upload = { release: () => void } & (
  | { kind: "whole"; body: Uint8Array | null }
  | { kind: "streamed"; body: ReadableStream<Uint8Array>; pending: () => boolean }
  | { kind: "broken"; message: string }
);

/**
 * Reads a client's body up to `limit` bytes, before anything is asked of the origin.
 *
 * @example
 * const upload = await readUpload(request.body);
 * try { if (upload.kind === "whole") send(upload.body); } finally { upload.release(); }
 */
export async function readUpload(
  body: ReadableStream<Uint8Array> | Uint8Array | null | undefined,
  limit = UPLOAD_BUFFER_BYTES,
): Promise<Upload> {
  if (!body || body instanceof Uint8Array) return { kind: "whole", body: body ?? null, release: () => undefined };
  const reader = body.getReader();
  if (reservedBytes + limit > UPLOAD_BUDGET_BYTES) return streamed([], reader, () => undefined);
  reservedBytes += limit;
  let held = true;
  const release = () => {
    if (held) reservedBytes -= limit;
    held = false;
  };
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { kind: "whole", body: concatBytes(chunks, total), release };
      chunks.push(value);
      total += value.byteLength;
      if (total > limit) return streamed(chunks, reader, release);
    }
  } catch (error) {
    release();
    return { kind: "broken", message: `the request body ended early (${errorText(error)})`, release };
  }
}

/** The chunks read so far, then the rest of the client's body as it arrives. */
function streamed(chunks: Uint8Array[], reader: ReadableStreamDefaultReader<Uint8Array>, release: () => void): Upload {
  let pending = true;
  let cancelled = false;
  const rest = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const first = chunks.shift();
      if (first) return controller.enqueue(first);
      const { done, value } = await reader.read();
      if (!done) return controller.enqueue(value);
      // A read ended by our own cancel (the origin call stopped) is no end of the client's body.
      if (!cancelled) pending = false;
      controller.close();
    },
    cancel(reason) {
      cancelled = true;
      return reader.cancel(reason);
    },
  });
  return { kind: "streamed", body: rest, pending: () => pending, release };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
