import type { Clock } from "./clock.ts";
import type { Config } from "./config.ts";
import type { Coordinator } from "./fill/coordinator.ts";
import type { PassMarks } from "./fill/pass-marks.ts";
import type { RefusalMarks } from "./fill/refusal-marks.ts";
import type { RefreshMarks } from "./fill/refresh-marks.ts";
import type { Metrics } from "./admin/metrics.ts";
import type { FetchLike } from "./origin/origin-client.ts";
import type { ContentDecoding } from "./origin/response-fields.ts";
import type { OriginCallEvent } from "./origin/guarded-call.ts";
import type { OriginGuard } from "./guard/origin-guard.ts";
import type { PurgeSnapshot } from "./admin/purge.ts";
import type { Store } from "./store/store.ts";
import type { WaitingRequests } from "./guard/waiting-requests.ts";

/** What an engine (engine.ts) is built from: the runtime's tiers, coordinator, guard and fetch. */
export interface EngineOptions {
  config: Config;
  clock: Clock;
  /** This edge's own tier: the data center's Cache API, the process LRU. */
  near: Store;
  coordinator: Coordinator;
  /**
   * A fleet's shared tier (Redis), the store its coordinator fills: read by the requests the
   * near tier answers alone when it has nothing fresh for them (store/shared-look.ts). Absent
   * where the near tier is the store (one process) or another tier stands in (the Worker).
   */
  shared?: Pick<Store, "get">;
  /** Used when `coordinator` throws (Durable Object or Redis unreachable): local single-flight. */
  fallback?: Coordinator;
  guard: OriginGuard;
  fetch: FetchLike;
  /** Which Content-Encodings `fetch` decodes (the runtime's rule); undici's by default. */
  decodes?: ContentDecoding;
  /** Keeps work alive after the response (ctx.waitUntil on Workers). */
  background: (work: Promise<unknown>) => void;
  metrics?: Metrics;
  /** Hears each relay's origin call (fills report through the coordinator); default: counted in `metrics`. */
  onOriginCall?: (event: OriginCallEvent) => void;
  /**
   * The purges in force, as this edge knows them. The runtime keeps the snapshot no older
   * than its propagation bound, and a purge returns only after that bound has passed.
   */
  purges?: () => PurgeSnapshot | Promise<PurgeSnapshot>;
  /** Reports coordinator failures (the adapter logs them). */
  onDegraded?: (error: unknown) => void;
  /**
   * The keys this edge is refreshing, shared by engines that serve one edge (the Worker
   * builds one per request): one background refresh per key, whichever request saw it stale.
   */
  refreshMarks?: RefreshMarks;
  /**
   * Streamed bodies being copied into the near tier (key and token), so one copy is made per
   * entry however many requests read it. Defaults to the engine's own; a runtime that builds
   * an engine per request (Workers) passes one that lives as long as its near tier.
   */
  nearCopies?: Set<string>;
  /**
   * `near` is the coordinator's own store (one Node process): a streamed body the coordinator
   * stores there once complete is not copied into it a second time (one more whole copy of
   * every streamed body in memory, and its bytes claimed twice from the fill budget).
   */
  nearIsStore?: boolean;
  /**
   * The keys whose answers could not be shared, whose misses go straight to the origin
   * (fill/pass-marks.ts). Defaults to the engine's own; a Worker passes its isolate's.
   */
  passMarks?: PassMarks;
  /**
   * The coordinator's refusals of keys (breaker open, a key backing off), remembered until
   * their retry time: a request this edge's copy answers meanwhile asks nothing
   * (fill/refusal-marks.ts). Absent (Node): every such request asks its coordinator, in
   * process or through Redis, as before.
   */
  refusals?: RefusalMarks;
  /**
   * The requests this process holds waiting for an origin answer, against `origin.maxWaiting`
   * (guard/waiting-requests.ts). Absent (the Worker): no bound.
   */
  waiting?: WaitingRequests;
}
