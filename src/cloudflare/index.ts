/** herdless on Cloudflare Workers: the adapters that implement what src/core declares. */
export { CacheApiStore, cacheUrlFor, ENTRY_META_HEADER } from "./cache-api-store.ts";
export { DurableObjectStore, DEFAULT_MAX_BODY_BYTES, type DurableObjectStoreOptions } from "./do-store.ts";
export { StorageLeaseManager, type LeaseRecord } from "./storage-lease.ts";
export { configFromEnv, type ConfigEnv } from "./config-env.ts";
export type { Env } from "./env.ts";
export { handle, type EdgeOptions } from "./edge.ts";
export { coordinatorClient } from "./coordinator-client.ts";
export { deploymentGuard } from "./deployment-guard.ts";
export { toEngineRequest, toResponse } from "./convert.ts";
export { KeyCoordinatorObject } from "./key-coordinator-object.ts";
export { OriginGuardObject } from "./origin-guard-object.ts";
export { PurgeRegistryObject, DurableObjectPurgeRegistry } from "./purge-registry-object.ts";
export { StatsObject } from "./stats-object.ts";
export { adminResponse, TOKEN_HINT } from "./admin-route.ts";
