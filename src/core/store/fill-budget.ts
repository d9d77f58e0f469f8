import type { Config } from "../config.ts";
import { MIN_FILL_BUDGET_BYTES } from "../config/fields.ts";

/**
 * Bytes of bodies this process (or Worker isolate) holds whole while they still arrive, to
 * store them (fills, a near tier's copy, a body read before its callers are answered): what
 * `cache.fillBudgetBytes` bounds. Stored entries are not counted here: `cache.maxBytes` bounds them.
 */
let heldBytes = 0;
let peakBytes = 0;
/** Bodies that stopped being kept because the budget was full: streamed to their clients, not stored. */
let refusedBodies = 0;

/** The fill budget of this process or isolate, for metrics and tests. */
export interface FillBudgetView {
  /** Bytes held now. */
  bytes: number;
  /** The most held at once since the process (or isolate) started. */
  peakBytes: number;
  /** Bodies streamed without being stored because the budget was full. */
  refused: number;
}

export function fillBudgetView(): FillBudgetView {
  return { bytes: heldBytes, peakBytes, refused: refusedBodies };
}

/**
 * The default budget: a quarter of `cache.maxBytes`. On Node the documented bound is resident
 * memory ≤ 1.5 × `cache.maxBytes` + 100 MiB, and its parts are: the stored entries (1 ×, the
 * LRU charges what they occupy), the heap's headroom over them (0.25 ×: the old generation is
 * sized 1.25 × `cache.maxBytes` + 24 MiB, bounded-heap.ts), the bodies still arriving (0.25 ×,
 * this budget; at least 1 MiB, taken from the constant), and Node itself with the heap's fixed
 * part (~50 + 48 MiB, the 100 MiB). Before
 * it, each of `origin.maxConcurrency` fills could hold `cache.maxEntryBytes` (8 × 25 MiB).
 * A Worker isolate sets its own (cloudflare/config-env.ts: 64 MiB of its 128 MB, config/fields.ts).
 */
export function fillBudgetBytes(config: Config): number {
  return config.cache.fillBudgetBytes ?? Math.max(Math.floor(config.cache.maxBytes / 4), MIN_FILL_BUDGET_BYTES);
}

/**
 * One body's claim on the process-wide fill budget. It grows as the body does ({@link cover})
 * and is refused, claiming nothing more, once it would take the process past `budgetBytes`:
 * the holder then stops keeping the body (it streams it on unstored) and {@link release}s.
 *
 * @example
 * const claim = new FillClaim(fillBudgetBytes(config));
 * if (!claim.cover(received)) dropKeptPrefix(); // and claim.release()
 * claim.release(); // once the bytes are stored or dropped
 */
export class FillClaim {
  private claimed = 0;
  private refused = false;
  constructor(private readonly budgetBytes: number) {}

  /** Claims up to `bytes` in all for this body; false when that would pass the budget (counted once per claim). */
  cover(bytes: number): boolean {
    if (bytes <= this.claimed) return true;
    const more = bytes - this.claimed;
    if (heldBytes + more > this.budgetBytes) {
      if (!this.refused) refusedBodies += 1;
      this.refused = true;
      return false;
    }
    heldBytes += more;
    this.claimed = bytes;
    peakBytes = Math.max(peakBytes, heldBytes);
    return true;
  }

  /** Gives every claimed byte back (idempotent). */
  release(): void {
    heldBytes -= this.claimed;
    this.claimed = 0;
  }
}
