/**
 * herdless core: the runtime-free engine. Runtimes (herdless/node, herdless/cloudflare)
 * implement the contracts declared here: Store, LeaseManager, OriginGuard, Coordinator,
 * PurgeRegistry.
 */
export {
  ADMIN_PREFIX,
  handleAdmin,
  statsSnapshot,
  tokenMatches,
  type AdminContext,
  type AdminRequest,
  type AdminResponse,
  type StatsSnapshot,
} from "./admin/admin.ts";
export { admit, closedBreaker, record, type BreakerRecord, type BreakerSettings } from "./guard/breaker.ts";
export { formatCacheStatus, type CacheStatus, type CacheStatusDetail } from "./http/cache-status.ts";
export { parseCacheControl, type Directives } from "./http/cache-control.ts";
export { ManualClock, systemClock, type Clock } from "./clock.ts";
export { configSchema, parseConfig, routeFor, type Config, type ConfigInput, type RoutePolicy } from "./config.ts";
export type { Coordinator, FillRequest, FillResult, PassResponse } from "./fill/coordinator.ts";
export { decide, decideOnFailure, type Decision, type FailureDecision, type RequestFacts } from "./http/decision.ts";
export { Engine, type EngineOptions, type EngineRequest } from "./engine.ts";
export { ageSeconds, decodeEntry, encodeEntry, ENTRY_FORMAT_VERSION, type Entry } from "./http/entry.ts";
export { HerdlessError, isHerdlessError, type HerdlessErrorCode } from "./errors.ts";
export { freshHit, type SyncStore } from "./http/fresh-hit.ts";
export { effectiveDirectives, lifetimes, type Lifetimes } from "./http/freshness.ts";
export { storability, type Storability } from "./http/storability.ts";
export type { HeaderReader } from "./http/http.ts";
export { primaryKey, variantKey, varyNames } from "./http/key.ts";
export { KeyCoordinator, type KeyCoordinatorOptions } from "./fill/key-coordinator.ts";
export type { Lease, LeaseManager } from "./fill/lease.ts";
export { LocalGuard, type LocalGuardOptions } from "./guard/local-guard.ts";
export { LruStore, type LruStoreOptions } from "./store/lru-store.ts";
export { MemoryLeaseManager } from "./fill/memory-lease.ts";
export { Metrics } from "./admin/metrics.ts";
export { fetchOrigin, type FetchLike, type OriginResponse } from "./origin/origin-client.ts";
export { type GuardSnapshot, type OriginGuard, type OriginPermit, type Priority } from "./guard/origin-guard.ts";
export {
  LocalPurgeRegistry,
  parsePurgeCommand,
  type PurgeCommand,
  type PurgeRegistry,
  type PurgeSnapshot,
} from "./admin/purge.ts";
export { fromEntry, type EngineResponse } from "./http/respond.ts";
export { SingleFlight } from "./fill/single-flight.ts";
export type { Store } from "./store/store.ts";
export { TieredStore } from "./store/tiered-store.ts";
