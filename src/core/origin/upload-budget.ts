/**
 * What the uploads of one process or Worker isolate (an isolate has 128 MB) may hold together:
 * the bytes read from their clients and not yet handed to the origin. Past it an upload is
 * streamed as soon as its first bytes are in, and reads no further ahead of the origin, so a
 * crowd of uploads cannot exhaust memory.
 *
 * Charged by the bytes held, never reserved: a connection that has sent headers and nothing
 * else holds nothing. When each upload reserved its 64 KiB on arrival, 128 POSTs that sent
 * their headers only spent the whole budget without a byte of body, and every upload after
 * them, however small, was streamed and held an origin permit while it waited on its client.
 */
export const UPLOAD_BUDGET_BYTES = 8 * 1024 * 1024;

let heldBytes = 0;

/** Bytes the uploads of this process or isolate hold now (for tests and metrics). */
export function uploadHeldBytes(): number {
  return heldBytes;
}

/** Counts `bytes` an upload read from its client and holds. */
export function holdUploadBytes(bytes: number): void {
  heldBytes += bytes;
}

/** Gives back `bytes` an upload held (handed to the origin, or let go). */
export function freeUploadBytes(bytes: number): void {
  heldBytes -= bytes;
}

/** Whether the uploads together hold more than {@link UPLOAD_BUDGET_BYTES}. */
export function uploadBudgetSpent(): boolean {
  return heldBytes > UPLOAD_BUDGET_BYTES;
}
