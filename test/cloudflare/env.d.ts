// Types the `env` of `cloudflare:workers` / `cloudflare:test` and the values the
// global setup provides, for code compiled with tsconfig.workers.json.
import type { Env as HerdlessEnv } from "../../src/cloudflare/env.ts";

declare global {
  namespace Cloudflare {
    // Declaration merging needs an interface, even an empty one.
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    interface Env extends HerdlessEnv {}
  }
}

declare module "vitest" {
  export interface ProvidedContext {
    herdlessTestOrigin: string;
    herdlessStaleOrigin: string;
    herdlessTrailerOrigin: string;
  }
}
