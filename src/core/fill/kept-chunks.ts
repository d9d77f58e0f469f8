import { concatBytes } from "../http/http.ts";

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
