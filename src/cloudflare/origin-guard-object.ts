import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.ts";

/**
 * The deployment-wide origin guard (`env.GUARD.idFromName("global")`): concurrency cap,
 * queue and circuit breaker. Placeholder until the guard is built.
 */
export class OriginGuardObject extends DurableObject<Env> {}
