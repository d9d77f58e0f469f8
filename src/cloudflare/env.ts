import type { ConfigEnv } from "./config-env.ts";
import type { KeyCoordinatorObject } from "./key-coordinator-object.ts";
import type { OriginGuardObject } from "./origin-guard-object.ts";
import type { PurgeRegistryObject } from "./purge-registry-object.ts";
import type { StatsObject } from "./stats-object.ts";

/** Bindings of the herdless Worker, as declared in wrangler.jsonc. */
export interface Env extends ConfigEnv {
  /** One object per cache key; see {@link KeyCoordinatorObject}. */
  COORDINATOR: DurableObjectNamespace<KeyCoordinatorObject>;
  /** One object per deployment; see {@link OriginGuardObject}. */
  GUARD: DurableObjectNamespace<OriginGuardObject>;
  /** One object per deployment holding the purge marks; see {@link PurgeRegistryObject}. */
  PURGES: DurableObjectNamespace<PurgeRegistryObject>;
  /**
   * One object per deployment summing every isolate's counters; see {@link StatsObject}.
   * Without it the stats, dashboard and metrics show the answering isolate's counters only.
   */
  STATS?: DurableObjectNamespace<StatsObject>;
  /**
   * Bearer token of the admin API (/__herdless/: dashboard, stats, purge), at least 16
   * characters; a Worker secret (`npx wrangler secret put HERDLESS_ADMIN_TOKEN`, or
   * `.dev.vars` locally). Wins over `admin.token` of HERDLESS_CONFIG; with neither set
   * the admin API is disabled.
   */
  HERDLESS_ADMIN_TOKEN?: string;
}
