import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.ts";

/**
 * The single place in the world that talks to the origin for one cache key
 * (`env.COORDINATOR.idFromName(key)`). Placeholder: the coalescing engine lands here.
 */
export class KeyCoordinator extends DurableObject<Env> {}
