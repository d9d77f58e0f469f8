import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { FillResult } from "../fill/coordinator.ts";
import { servableOnError } from "../http/decision.ts";
import type { Entry } from "../http/entry.ts";
import { concatBytes, type HeaderReader } from "../http/http.ts";
import { fillBudgetBytes, FillClaim } from "./fill-budget.ts";
import { invalidatedWhileAsked, invalidateStored, putVaryPointer, writtenWhileAsked } from "./lookup.ts";
import type { Store } from "./store.ts";

export interface NearTierOptions {
  config: Config;
  clock: Clock;
  /** This edge's own tier: the data center's Cache API, the process LRU. */
  near: Store;
  /** Keeps work alive after the response (ctx.waitUntil on Workers). */
  background: (work: Promise<unknown>) => void;
  /** Streamed bodies being copied into `near` (key and token); see EngineOptions.nearCopies. */
  nearCopies?: Set<string>;
  /** See EngineOptions.nearIsStore: the coordinator stores streamed bodies in `near` itself. */
  nearIsStore?: boolean;
}

/**
 * What an edge writes into its own tier from the entries the coordinator hands it: whole
 * entries at once, streamed bodies once they arrived whole. Writes are best effort: a near
 * tier that fails only costs a later trip to the coordinator.
 */
export class NearTier {
  private readonly copies: Set<string>;
  constructor(private readonly o: NearTierOptions) {
    this.copies = o.nearCopies ?? new Set();
  }

  /**
   * Writes an entry the coordinator gave us into the near tier, with its Vary pointer. A
   * cached error never replaces a copy that may still be served stale: it would turn every
   * later hit into the error (a background refresh brings cached errors here too). Nor is an
   * answer asked for before this edge saw a write to the URL succeed (RFC 9111 §4.4).
   */
  async keep(entry: Entry, primary: string): Promise<void> {
    // This process's own record of writes, no read of the tier: keep sits on a miss's path
    // here, and on the Worker a Cache API read was one more sequential hop per miss (4 → 5,
    // +1.9 ms in the cold-misses bench). A write another isolate saw reached the key's
    // coordinator too, which marked its answer `unkept` (never kept).
    if (writtenWhileAsked(this.o.near, primary, entry)) return;
    await this.kept(entry, primary);
  }

  /** {@link keep} for a streamed body's copy, behind the answer: the tier's own mark is read too (a stream carries no `unkept`). */
  private async keepCopy(entry: Entry, primary: string): Promise<void> {
    if (await invalidatedWhileAsked(this.o.near, primary, entry).catch(() => true)) return;
    await this.kept(entry, primary);
  }

  private async kept(entry: Entry, primary: string): Promise<void> {
    const { near } = this.o;
    if (entry.negative) {
      const held = await near.get(entry.key).catch(() => undefined);
      if (servableOnError(held, this.o.config, this.o.clock.now())) return;
    }
    const written = await near.put(entry).catch(() => false);
    if (written && entry.key !== primary) await putVaryPointer(near, entry, primary).catch(() => false);
  }

  /**
   * The body as it streams to the client, copied into the near tier once it arrived whole
   * (the stream closes only then; a failed body is never kept). One copy per entry at a
   * time: other readers of the same entry pass through untouched.
   */
  copied(result: Extract<FillResult, { kind: "stream" }>, primary: string): ReadableStream<Uint8Array> {
    const { head } = result;
    const id = `${head.token} ${head.key}`;
    if (this.o.nearIsStore || result.size === "too-large" || result.size === "over-budget") return result.body;
    if (this.copies.has(id)) return result.body;
    this.copies.add(id);
    const limit = this.o.config.cache.maxEntryBytes;
    const reader = result.body.getReader();
    let chunks: Uint8Array[] | undefined = [];
    let total = 0;
    // Its bytes are claimed too (store/fill-budget.ts), though while the flight's shared body
    // keeps them they are the same chunks: counted twice rather than missed once that drops them.
    const claim = new FillClaim(fillBudgetBytes(this.o.config));
    const stop = () => {
      this.copies.delete(id);
      chunks = undefined;
    };
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          let read: ReadableStreamReadResult<Uint8Array>;
          try {
            read = await reader.read();
          } catch (error) {
            stop();
            claim.release();
            controller.error(error);
            return;
          }
          if (read.done) {
            const kept = chunks;
            stop();
            controller.close();
            // Claimed until written: the join is one more copy of the body meanwhile.
            const copy = kept ? this.keepCopy({ ...head, body: concatBytes(kept, total) }, primary) : undefined;
            this.o.background((copy ?? Promise.resolve()).finally(() => claim.release()));
            return;
          }
          total += read.value.byteLength;
          if (chunks && (total > limit || !claim.cover(total))) {
            chunks = undefined;
            claim.release();
          }
          chunks?.push(read.value);
          controller.enqueue(read.value);
        },
        cancel: (reason) => {
          stop();
          claim.release();
          return reader.cancel(reason).catch(() => undefined);
        },
      },
      { highWaterMark: 0 },
    );
  }

  /**
   * RFC 9111 §4.4 in this tier: every response it holds for `primary` is invalid from now,
   * every variant (invalidateStored), and the variant `headers` select is dropped.
   */
  async forget(primary: string, headers: HeaderReader): Promise<void> {
    await invalidateStored(this.o.near, primary, headers, this.o.clock.now()).catch(() => undefined);
  }

  /** Drops one stored entry (the origin's answer replaced it). */
  async drop(key: string): Promise<void> {
    await this.o.near.delete(key).catch(() => false);
  }
}
