import { handle } from "./edge.ts";
import type { Env } from "./env.ts";

export { KeyCoordinatorObject } from "./key-coordinator-object.ts";
export { OriginGuardObject } from "./origin-guard-object.ts";
export { PurgeRegistryObject } from "./purge-registry-object.ts";
export { StatsObject } from "./stats-object.ts";

/** The herdless Worker: every request goes through the edge (see edge.ts); /__herdless/ is the admin API. */
export default {
  fetch: (request, env, ctx) => handle(request, env, ctx),
} satisfies ExportedHandler<Env>;
