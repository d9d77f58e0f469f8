import { randomUUID } from "node:crypto";
import type { Clock } from "../../core/clock.ts";
import { headerList } from "../../core/http/http.ts";
import { invalidateStored, noteWrite } from "../../core/store/lookup.ts";
import type { Store } from "../../core/store/store.ts";
import type { RedisNotifier } from "./notifier.ts";

const CHANNEL = "invalidated";

interface Invalidation {
  /** The announcing member, which has marked its own memory already. */
  from: string;
  primary: string;
  /** The writer's selecting headers: the variant they name goes at once. */
  headers: [string, string][];
  /** The instant of the write, on the announcing member's clock (fleet clocks are NTP-synchronized). */
  at: number;
}

export interface FleetInvalidationsOptions {
  notifier: RedisNotifier;
  /** This member's near tier (its LRU). */
  near: Store;
  /** The store this member's fills write to (Redis): told of a write so a fill running here never stores what it was answered before it. */
  shared?: Store;
  clock: Clock;
  onError?: (error: unknown) => void;
}

/**
 * RFC 9111 §4.4 across a Node fleet: an unsafe request's success through one member marks the
 * URL in every member's memory, not only in its own and in Redis. Without it a visitor whose
 * next request the load balancer sends to another member is served, from that member's
 * memory, the copy their own write made obsolete, until it expires.
 *
 * One fleet-wide channel, heard by every member (a write is rare beside reads, and every
 * member may hold the URL). The mark carries the write's instant, not the hearing member's,
 * so a copy a member fetched after the write (from another member's fill) is not hidden.
 * A member cut off from Redis when the news goes out keeps its copy until it expires, as
 * before; the shared copy in Redis is marked by the writer either way.
 */
export class FleetInvalidations {
  private readonly id = randomUUID();
  private readonly watching: { stop(): void };

  constructor(private readonly o: FleetInvalidationsOptions) {
    this.watching = o.notifier.watch(CHANNEL, (message) => {
      if (message !== undefined) void this.heard(message).catch((error: unknown) => o.onError?.(error));
    });
  }

  /** Tells the other members that `primary` was written to (the writer's own memory is marked already). */
  async announce(primary: string, headers: [string, string][]): Promise<void> {
    const news: Invalidation = { from: this.id, primary, headers, at: this.o.clock.now() };
    await this.o.notifier.broadcast(CHANNEL, JSON.stringify(news));
  }

  stop(): void {
    this.watching.stop();
  }

  private async heard(message: string): Promise<void> {
    const news = parse(message);
    if (news === undefined || news.from === this.id) return;
    if (this.o.shared) noteWrite(this.o.shared, news.primary, news.at);
    await invalidateStored(this.o.near, news.primary, headerList(news.headers), news.at);
  }
}

/** The news, or undefined for anything else on the channel. */
function parse(message: string): Invalidation | undefined {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { from, primary, headers, at } = value as Record<string, unknown>;
  const pairs =
    Array.isArray(headers) &&
    headers.every((h) => Array.isArray(h) && h.length === 2 && h.every((part) => typeof part === "string"));
  if (typeof from !== "string" || typeof primary !== "string" || !pairs || typeof at !== "number") return undefined;
  if (!Number.isFinite(at)) return undefined;
  return { from, primary, headers: headers as [string, string][], at };
}
