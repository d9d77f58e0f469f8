/**
 * herdless core: the runtime-free engine. Runtimes (herdless/node, herdless/cloudflare)
 * implement the contracts declared here: Store, LeaseManager, OriginGuard, Coordinator,
 * PurgeRegistry.
 */
export { ADMIN_PREFIX, handleAdmin, statsSnapshot, tokenMatches, type AdminContext, type AdminRequest, type AdminResponse, type StatsSnapshot } from "./admin.ts";
export { admit, closedBreaker, record, type BreakerRecord, type BreakerSettings } from "./breaker.ts";
export { formatCacheStatus, type CacheStatus, type CacheStatusDetail } from "./cache-status.ts";
export { parseCacheControl, type Directives } from "./cache-control.ts";
export { ManualClock, systemClock, type Clock } from "./clock.ts";
export { configSchema, parseConfig, routeFor, type Config, type ConfigInput, type RoutePolicy } from "./config.ts";
export type { Coordinator, FillRequest, FillResult, PassResponse } from "./coordinator.ts";
export { decide, decideOnFailure, type Decision, type FailureDecision, type RequestFacts } from "./decision.ts";
export { Engine, type EngineOptions, type EngineRequest } from "./engine.ts";
export { ageSeconds, decodeEntry, encodeEntry, ENTRY_FORMAT_VERSION, type Entry } from "./entry.ts";
export { HerdlessError, isHerdlessError, type HerdlessErrorCode } from "./errors.ts";
export { freshHit, type SyncStore } from "./fresh-hit.ts";
export { effectiveDirectives, lifetimes, storability, type Lifetimes, type Storability } from "./freshness.ts";
export type { HeaderReader } from "./http.ts";
export { primaryKey, variantKey, varyNames } from "./key.ts";
export { KeyFiller, type KeyFillerOptions } from "./key-filler.ts";
export { withLease, type Lease, type LeaseManager } from "./lease.ts";
export { LocalGuard, type LocalGuardOptions } from "./local-guard.ts";
export { LruStore, type LruStoreOptions } from "./lru-store.ts";
export { MemoryLeaseManager } from "./memory-lease.ts";
export { MemoryStore } from "./memory-store.ts";
export { Metrics } from "./metrics.ts";
export { fetchOrigin, type FetchLike, type OriginResponse } from "./origin-client.ts";
export { unguarded, type GuardSnapshot, type OriginGuard, type OriginPermit, type Priority } from "./origin-guard.ts";
export { LocalPurgeRegistry, parsePurgeCommand, type PurgeCommand, type PurgeRegistry, type PurgeSnapshot } from "./purge.ts";
export { fromEntry, type EngineResponse } from "./respond.ts";
export { SingleFlight } from "./single-flight.ts";
export type { Store } from "./store.ts";
export { TieredStore } from "./tiered-store.ts";
