import type { Config, RoutePolicy } from "../config.ts";
import type { FillRequest } from "./coordinator.ts";
import { keyQuery } from "../http/key.ts";
import type { EngineRequest } from "../http/respond.ts";
import type { PurgeSnapshot } from "../admin/purge.ts";
import type { LookupResult } from "../store/lookup.ts";
import { originRequestHeaders, originUrl, type ForwardPolicy } from "../origin/forward.ts";

/** Which fill of a client request's key the engine asks the coordinator for. */
export interface FillSpec {
  route: RoutePolicy;
  primary: string;
  /**
   * What the edge's lookup found: the variant key to fill, and when the URL was last written
   * to as its mark says (RFC 9111 §4.4: FillRequest `writtenAt`).
   */
  found: Pick<LookupResult, "key" | "invalidatedAt">;
  priority: FillRequest["priority"];
  purges: PurgeSnapshot | undefined;
  revalidate: boolean;
  /** RFC 9111 §3.5: the request's own Authorization goes on its own fill. */
  authorized: boolean;
}

/** The coordinator's request for `spec`, built from what the client sent. */
export function fillRequest(
  config: Config,
  forward: ForwardPolicy,
  request: EngineRequest,
  spec: FillSpec,
): FillRequest {
  const { route, primary, found, priority, purges, revalidate, authorized } = spec;
  const { key, invalidatedAt: writtenAt } = found;
  // Every end-to-end header the client sent, so the origin's answer (and the variant its
  // Vary selects) is the one this request asked for; credentials only where the route caches
  // them, or (RFC 9111 §3.5) a request's own Authorization on its own fill (`authorized`,
  // never with a Cookie: decide() relays those), whose answer storability then judges.
  const headers = originRequestHeaders(request.rawHeaders, forward, {
    kind: "fill",
    credentials: route.cacheAuthorized || authorized,
    url: request.url,
    clientAddress: request.clientAddress,
    body: false,
  });
  return {
    primary,
    key,
    // The key's query, never the client's: a parameter left out of the key cannot shape what is stored.
    url: originUrl(config, request.url, keyQuery(request.url, route.key)),
    path: request.url.pathname,
    headers,
    priority,
    ...(priority === "foreground" && request.onInterim ? { onInterim: request.onInterim } : {}),
    ...(purges ? { purges } : {}),
    ...(writtenAt !== undefined ? { writtenAt } : {}),
    ...(revalidate ? { revalidate } : {}),
  };
}
