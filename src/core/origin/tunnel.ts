import { Places } from "../places.ts";
import { isAdminPath } from "../admin/admin-path.ts";
import type { CacheStatus } from "../http/cache-status.ts";
import { routeFor, type Config } from "../config.ts";
import type { HeaderReader } from "../http/http.ts";
import { synthetic, type EngineRequest, type EngineResponse } from "../http/respond.ts";
import { originRequestHeaders, originUrl, type ForwardPolicy } from "./forward.ts";
import { guardedOriginCall, type GuardedCallDeps } from "./guarded-call.ts";
import { relayAnswer } from "./relay.ts";

/**
 * Whether a request opens a WebSocket tunnel to the origin: a WebSocket opening handshake
 * (RFC 6455 §4.1: a GET whose `Upgrade` is `websocket` alone, in any case), with
 * `origin.webSockets` on, outside the admin API. Every other request that asks to upgrade
 * (`h2c`, `websocket, h2c`, a POST) is an ordinary one, its `Upgrade` dropped as hop-by-hop:
 * an `h2c` upgrade passed on would let a client speak HTTP/2 to the origin past every rule
 * herdless applies (request smuggling). `Connection: upgrade` is the runtime's to check: Node's
 * parser treats a request as an upgrade only with it (and server.ts asks for HTTP/1.1), while
 * Cloudflare's edge decides which requests are WebSocket handshakes and rewrites the
 * `Connection` a Worker sees (to `Keep-Alive`), so a Worker reads `Upgrade` alone.
 *
 * @example
 * opensTunnel(config, "GET", "/cable", headerList([["upgrade", "websocket"]])); // true
 */
export function opensTunnel(config: Config, method: string, pathname: string, headers: HeaderReader): boolean {
  if (!config.origin.webSockets || method !== "GET" || isAdminPath(pathname)) return false;
  return headers.get("upgrade")?.trim().toLowerCase() === "websocket";
}

/**
 * The WebSocket tunnels one Node process or Worker isolate has open, handshakes included,
 * against `origin.maxWebSockets`. A tunnel holds no origin permit once open (it may last
 * hours, and the permits bound the requests the origin works on), so this is what bounds them.
 *
 * @example
 * const free = slots.take(); // undefined: all taken
 * free?.(); // when the tunnel has closed
 */
export class TunnelSlots extends Places {}

/**
 * How a WebSocket handshake ended:
 * - `switched`: the origin answered `101`. `response` is the `101` the client gets (the
 *   origin's end-to-end fields and Cache-Status; the runtime adds `Upgrade` and `Connection`),
 *   `connection` the runtime's handle on the origin's side (origin-client.ts
 *   SwitchedOriginResponse), and `close` frees the tunnel's slot: call it once both sides closed.
 * - `answer`: anything else, the client's whole answer (the origin's own status, or herdless's
 *   503 when no slot is free or the guard refused); nothing is left open.
 */
export type TunnelOpening =
  | { kind: "switched"; response: EngineResponse; connection: Response; close: () => void }
  | { kind: "answer"; response: EngineResponse };

export interface TunnelDeps {
  config: Config;
  forward: ForwardPolicy;
  originDeps: GuardedCallDeps;
}

const TUNNEL_STATUS: CacheStatus = { fwd: "bypass" };

/**
 * Relays a WebSocket handshake ({@link opensTunnel}) to the origin: the request an ordinary
 * relay sends (same URL, Host, forwarded and filtered headers: `Sec-WebSocket-*` are end to end)
 * plus `Upgrade: websocket`, through the guard like any uncached request (a permit for the
 * handshake alone, bounded by `origin.timeoutMs`; `503` while the breaker is open or the queue
 * full). Nothing of it is looked up, stored or collapsed. `signal`: the client went away.
 *
 * @example
 * const opening = await openTunnel(deps, request, slots);
 * if (opening.kind === "answer") write(opening.response); else splice(client, opening.connection, opening.close);
 */
export async function openTunnel(
  deps: TunnelDeps,
  request: EngineRequest,
  slots: TunnelSlots,
  signal?: AbortSignal,
): Promise<TunnelOpening> {
  const close = slots.take();
  if (!close) {
    const cap = deps.config.origin.maxWebSockets;
    const message = `too many WebSocket connections open here (origin.maxWebSockets: ${cap}); try again shortly`;
    return { kind: "answer", response: synthetic(503, message, { ...TUNNEL_STATUS, detail: "tunnel-limit" }, 1_000) };
  }
  const headers = originRequestHeaders(request.rawHeaders, deps.forward, {
    kind: "relay",
    credentials: true,
    url: request.url,
    clientAddress: request.clientAddress,
    body: false,
    method: "GET",
  });
  const url = originUrl(deps.config, request.url, request.url.search);
  const result = await guardedOriginCall(
    deps.originDeps,
    { url, method: "GET", headers, upgrade: "websocket" as const },
    {
      priority: "foreground",
      timeoutMs: routeFor(deps.config, request.url.pathname).timeoutMs,
      maxBodyBytes: 0,
      key: `GET ${url}`,
      readByClient: true,
      publicOrigin: request.url.origin,
      ...(signal ? { signal } : {}),
    },
  );
  const response = relayAnswer(result, deps.config, TUNNEL_STATUS, "GET");
  if (result.kind === "response" && result.response.kind === "switched")
    return { kind: "switched", response, connection: result.response.connection, close };
  close();
  return { kind: "answer", response };
}
