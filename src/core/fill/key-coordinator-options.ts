import type { Clock } from "../clock.ts";
import type { Config } from "../config.ts";
import type { Entry } from "../http/entry.ts";
import type { LeaseManager } from "./lease.ts";
import type { FetchLike } from "../origin/origin-client.ts";
import type { ContentDecoding } from "../origin/response-fields.ts";
import type { OriginCallEvent } from "../origin/guarded-call.ts";
import type { OriginGuard } from "../guard/origin-guard.ts";
import type { Store } from "../store/store.ts";
import type { StoredAnswer } from "./answers.ts";
import type { AnnounceFill, FillHeard, FlightRelay } from "./relay.ts";
import type { BackoffStore } from "../guard/key-backoff.ts";

/** What a {@link KeyCoordinator} (key-coordinator.ts) is built from: the runtime's parts. */
export interface KeyCoordinatorOptions {
  config: Config;
  clock: Clock;
  /** The authoritative store for the keys this filler serves (DO storage, Redis, or the process LRU). */
  store: Store;
  leases: LeaseManager;
  guard: OriginGuard;
  fetch: FetchLike;
  /** Which Content-Encodings `fetch` decodes (the runtime's rule); undici's by default. */
  decodes?: ContentDecoding;
  /** The announcement when another process's flight for `key` ends, with its entry if it came along; undefined after `timeoutMs`; at once when `answered` ({@link storedAnswer}) gives an entry. */
  waitForFill?: (key: string, timeoutMs: number, answered: StoredAnswer) => Promise<FillHeard | undefined>;
  /** Tells other processes how the flight for `key` went: `done`, `failed:<code>`, `alone`, or a `relay` reference; `stored`, the entry it stored. */
  announceFill?: AnnounceFill;
  /** Hands each flight's answer to its waiters in other processes (a Redis fleet): the body as it arrives, an error answer. */
  relay?: FlightRelay;
  /** Keeps background work alive (ctx.waitUntil on Workers). */
  background?: (work: Promise<unknown>) => void;
  /** Observes each origin call, for metrics. */
  onOriginCall?: (event: OriginCallEvent) => void;
  /** Hears each entry this coordinator wrote to its store once a streamed body completed. */
  onStored?: (entry: Entry) => void;
  /**
   * Where the keys' backoff is kept, shared as widely as the lease: the key's Durable Object,
   * Redis for a fleet. Default: this process's memory.
   */
  backoff?: BackoffStore;
  /**
   * A store or backoff read sent after a lease acquire is answered as of after it (one Redis:
   * a connection's commands run in order): a flight's look under the lease then goes beside
   * the acquire, not a round trip after it (a lease not taken wastes that read).
   */
  readsFollowAcquire?: boolean;
}
