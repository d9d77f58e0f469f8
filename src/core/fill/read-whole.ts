import { concatBytes } from "../http/http.ts";
import type { OriginResponse } from "../origin/origin-client.ts";

/** The response with its body read whole; a body above `limit` is dropped (cancelled, empty). */
export async function buffered(res: OriginResponse, limit: number): Promise<OriginResponse> {
  if (res.kind === "buffered") return res;
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (res.body) {
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.byteLength;
        if (total > limit) {
          await reader.cancel().catch(() => undefined);
          return { ...res, kind: "buffered", body: new Uint8Array(0) };
        }
        chunks.push(value);
      }
    } catch {
      // A broken error body: the status is what matters.
      return { ...res, kind: "buffered", body: new Uint8Array(0) };
    }
  }
  return { ...res, kind: "buffered", body: concatBytes(chunks, total) };
}
