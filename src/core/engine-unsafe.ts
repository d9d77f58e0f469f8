import type { CacheStatus } from "./http/cache-status.ts";
import { routeFor, type Config } from "./config.ts";
import type { Coordinator } from "./fill/coordinator.ts";
import { headerList } from "./http/http.ts";
import { invalidatedUrls } from "./http/invalidation.ts";
import { primaryKey } from "./http/key.ts";
import { selectingHeaders, type ForwardPolicy } from "./origin/forward.ts";
import { maxForwards } from "./origin/hops.ts";
import { optionsHere } from "./http/failure-answer.ts";
import type { EngineRequest, EngineResponse } from "./http/respond.ts";
import type { NearTier } from "./store/near-tier.ts";

/** What an unsafe request's relay and invalidations need of the engine. */
export interface UnsafeDeps {
  config: Config;
  forward: ForwardPolicy;
  nearTier: NearTier;
  coordinator: Coordinator;
  onDegraded?: ((error: unknown) => void) | undefined;
  /** The engine's relay (holding a waiting place: engine.ts relayHeld). */
  relay: (request: EngineRequest, status: CacheStatus) => Promise<EngineResponse>;
}

/**
 * RFC 9111 §4.4: relay an unsafe request, then, if it succeeded, invalidate its URL and the
 * same-origin Location / Content-Location: here, and at each URL's coordinator, which
 * would otherwise keep serving the old copy to every edge.
 *
 * @example
 * if (method !== "GET" && method !== "HEAD") return relayUnsafe(deps, request);
 */
export async function relayUnsafe(deps: UnsafeDeps, request: EngineRequest): Promise<EngineResponse> {
  // RFC 9110 §7.6.2: an OPTIONS whose Max-Forwards is spent is answered by this recipient.
  if (maxForwards(request.method, request.headers) === 0) return optionsHere();
  const response = await deps.relay(request, { fwd: "method" });
  const urls = invalidatedUrls(request.method, request.url, response.status, response.headers);
  await Promise.all(
    urls.map((url) => invalidate(deps, primaryKey(url, routeFor(deps.config, url.pathname).key), request)),
  );
  return response;
}

async function invalidate(deps: UnsafeDeps, primary: string, request: EngineRequest): Promise<void> {
  // The variant this client selects, named as a fill of its GET would name it (selectingView).
  const { rawHeaders, url, clientAddress } = request;
  const selecting = selectingHeaders(rawHeaders, deps.forward, { credentials: true, url, clientAddress });
  await deps.nearTier.forget(primary, headerList(selecting));
  try {
    await deps.coordinator.invalidate?.(primary, selecting);
  } catch (error) {
    // The coordinator's copy expires on its own; the client's write has already succeeded.
    deps.onDegraded?.(error);
  }
}
