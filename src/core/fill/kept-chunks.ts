import { concatBytes } from "../http/http.ts";

/**
 * A reader that fell behind gets the chunks that arrived meanwhile joined, up to this many
 * bytes: a fetched body comes in chunks of a few KB (5,000 for 20 MB in workerd), and each one
 * handed to each reader is a promise round trip per stream it passes through, dearer than a copy.
 */
const JOIN_BYTES = 256 * 1024;

/** Every byte arrived (and as many as declared); `body` is the whole of it, to store. */
export interface CompleteBody {
  kind: "complete";
  readonly body: Uint8Array;
}

/**
 * A complete end whose body is joined on first use: a reader of the stream (an edge sharing
 * one body among its requests) never asks for it, and a copy of tens of MB is not made for nothing.
 * Once joined (to be stored), `chunks` become views of the joined body, in place: readers still
 * reading them then hold the stored entry's bytes, not a second copy of the body beside it.
 */
export function complete(chunks: Uint8Array[], total: number): CompleteBody {
  let body: Uint8Array | undefined;
  return {
    kind: "complete",
    get body() {
      if (body) return body;
      const whole = (body = concatBytes(chunks, total));
      let offset = 0;
      chunks.forEach((chunk, i) => {
        chunks[i] = whole.subarray(offset, (offset += chunk.byteLength));
      });
      return whole;
    },
  };
}

/** The chunks from `index` on (before `end`) joined into one, up to {@link JOIN_BYTES} (always at least one chunk), and how many. */
export function joined(chunks: Uint8Array[], index: number, end: number): { chunk: Uint8Array; count: number } {
  let count = 1;
  let bytes = chunks[index]!.byteLength;
  while (index + count < end && bytes + chunks[index + count]!.byteLength <= JOIN_BYTES) {
    bytes += chunks[index + count]!.byteLength;
    count += 1;
  }
  const chunk = count === 1 ? chunks[index]! : concatBytes(chunks.slice(index, index + count), bytes);
  return { chunk, count };
}
