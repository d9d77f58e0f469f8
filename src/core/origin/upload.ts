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
 * A request body as it goes to the origin:
 * - `whole`: all of it, read before the origin call;
 * - `streamed`: larger than {@link UPLOAD_BUFFER_BYTES}: what was read, then the rest as it
 *   arrives; `pending()` is true until the client has sent its last byte, so a call that
 *   fails meanwhile is known to have waited on the client, not on the origin;
 * - `broken`: the client's body failed before its end (the client left, or its framing broke).
 */
export type Upload =
  | { kind: "whole"; body: Uint8Array | null }
  | { kind: "streamed"; body: ReadableStream<Uint8Array>; pending: () => boolean }
  | { kind: "broken"; message: string };

/**
 * Reads a client's body up to `limit` bytes, before anything is asked of the origin.
 *
 * @example
 * const upload = await readUpload(request.body);
 * if (upload.kind === "whole") send(upload.body);
 */
export async function readUpload(
  body: ReadableStream<Uint8Array> | Uint8Array | null | undefined,
  limit = UPLOAD_BUFFER_BYTES,
): Promise<Upload> {
  if (!body || body instanceof Uint8Array) return { kind: "whole", body: body ?? null };
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { kind: "whole", body: concatBytes(chunks, total) };
      chunks.push(value);
      total += value.byteLength;
      if (total > limit) break;
    }
  } catch (error) {
    return { kind: "broken", message: `the request body ended early (${errorText(error)})` };
  }
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
  return { kind: "streamed", body: rest, pending: () => pending };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
