import { concatBytes } from "../http/http.ts";
import type { OriginResponse, StreamedOriginResponse } from "../origin/origin-client.ts";
import { FillClaim } from "../store/fill-budget.ts";

/**
 * The response with its body read whole; a body above `limit`, or past the fill budget while
 * read (`budgetBytes`, store/fill-budget.ts), is dropped (cancelled, empty).
 */
export async function buffered(res: OriginResponse, limit: number, budgetBytes: number): Promise<OriginResponse> {
  if (res.kind === "buffered") return res;
  const claim = new FillClaim(budgetBytes);
  try {
    return await readWhole(res, limit, claim);
  } finally {
    claim.release();
  }
}

async function readWhole(res: StreamedOriginResponse, limit: number, claim: FillClaim): Promise<OriginResponse> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (res.body) {
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.byteLength;
        if (total > limit || !claim.cover(total)) {
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
