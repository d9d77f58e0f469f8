import type { ClientRequest } from "node:http";
import { pipeline, Readable, Transform } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";

/** A write to the origin gathers at least this much, or what came in one turn of the event loop. */
const COALESCE_BYTES = 64 * 1024;

/**
 * Sends an upload's body on `outgoing`, coalesced ({@link coalescedUpload}). pipeline, not
 * pipe: a client that goes away mid-upload errors the body, and that error must cut the origin
 * request (reported through its "error"), never go unheard and crash.
 */
export function sendUpload(outgoing: ClientRequest, body: ReadableStream<Uint8Array>): void {
  pipeline(Readable.fromWeb(body as NodeReadableStream<Uint8Array>), coalescedUpload(), outgoing, () => undefined);
}

/**
 * A pass-through for an upload on its way to the origin that writes what arrives within one
 * turn of the event loop (up to {@link COALESCE_BYTES}) as one chunk. A client's chunked body
 * reaches herdless in the pieces its framing made: 200,000 chunks of one byte were as many
 * writes to the origin, each a chunk of its own on the wire, and node:http's `writev` of them
 * cost ~1.5 s of CPU per such upload (quadratic: 400,000 cost three times 200,000's).
 *
 * @example
 * pipeline(Readable.fromWeb(body), coalescedUpload(), outgoing, () => undefined);
 */
function coalescedUpload(): Transform {
  let held: Buffer[] = [];
  let heldBytes = 0;
  let scheduled = false;
  const take = (): Buffer => {
    const out = held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held, heldBytes);
    held = [];
    heldBytes = 0;
    return out;
  };
  const stream: Transform = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      held.push(chunk);
      heldBytes += chunk.byteLength;
      // Enough for one write: it goes now, and the origin's pace holds the client back.
      if (heldBytes >= COALESCE_BYTES) return callback(null, take());
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          if (heldBytes > 0 && !stream.destroyed) stream.push(take());
        });
      }
      callback();
    },
    flush(callback) {
      callback(null, heldBytes > 0 ? take() : undefined);
    },
  });
  return stream;
}
