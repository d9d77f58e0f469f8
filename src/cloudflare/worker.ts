import { systemClock } from "../core/clock.ts";
import { accessLine, cacheStatusOf } from "../core/admin/access-line.ts";
import { handle } from "./edge.ts";
import type { Env } from "./env.ts";
import { isolateState } from "./isolate.ts";

export { KeyCoordinatorObject } from "./key-coordinator-object.ts";
export { OriginGuardObject } from "./origin-guard-object.ts";
export { PurgeRegistryObject } from "./purge-registry-object.ts";
export { StatsObject } from "./stats-object.ts";

/** The herdless Worker: every request goes through the edge (see edge.ts); /__herdless/ is the admin API. */
export default {
  fetch: async (request, env, ctx) => {
    const startedAt = performance.now();
    const response = forClient(request, await handle(request, env, ctx));
    logAccess(request, response, env, startedAt);
    return response;
  },
} satisfies ExportedHandler<Env>;

/**
 * The answer, for a client that may have hung up while it was being made (`request.signal`,
 * with the `enable_request_signal` compatibility flag): its body is let go at once. workerd
 * never reads an answer to a client that is gone, and that body, a reader of a download the
 * isolate's requests share, held the download back for every other client of it until the
 * laggard cut (`origin.streamIdleTimeoutMs`, 30 s).
 */
function forClient(request: Request, response: Response): Response {
  if (request.signal.aborted && response.body !== null) void response.body.cancel().catch(() => undefined);
  return response;
}

/**
 * With `log.access`, one line per request on `console.log` (Workers Logs, `wrangler tail`),
 * the Node server's fields (core `accessLine`) as its head leaves. Workers Logs record each
 * invocation already; this adds the `Cache-Status` they do not show.
 */
function logAccess(request: Request, response: Response, env: Env, startedAt: number): void {
  // The isolate's config, parsed once (the edge has just read it for this request).
  const isolate = isolateState(env, systemClock, "");
  if (isolate.kind !== "ready" || !isolate.config.log.access) return;
  const facts = {
    method: request.method,
    target: request.url,
    host: request.headers.get("host"),
    status: response.status,
    cacheStatus: cacheStatusOf(response.headers),
    ms: performance.now() - startedAt,
    client: request.headers.get("cf-connecting-ip"),
    complete: true,
  };
  console.log(accessLine(facts, new Date()));
}
