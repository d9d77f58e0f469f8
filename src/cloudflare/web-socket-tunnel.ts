import type { Engine } from "../core/engine.ts";
import type { ReadyIsolate } from "./isolate.ts";
import { toEngineRequest, toResponse } from "./convert.ts";

/**
 * Fields of the origin's 101 that belong to its handshake with workerd, not to the client's:
 * workerd answers the client's handshake itself (its own `Sec-WebSocket-Accept`), and frames
 * each side's messages by what that side negotiated (`Sec-WebSocket-Extensions`).
 */
const HANDSHAKE_FIELDS = new Set(["sec-websocket-accept", "sec-websocket-extensions"]);

/** Close codes a close frame never carries (RFC 6455 §7.4.1): a peer's 1006 is passed on as no code. */
const UNSENDABLE_CLOSE = new Set([1005, 1006, 1015]);

/**
 * WebSocket pass-through on the Worker (core `opensTunnel` said so). The engine relays the
 * handshake (`Engine.tunnel`: the guard object's permit for the handshake alone, the forwarded
 * headers); workerd's `fetch()` with `Upgrade: websocket` makes the origin's handshake and
 * hands its side over as `response.webSocket`. Its client (kj) refuses a `101` without
 * `Upgrade: websocket` or with a `Sec-WebSocket-Accept` other than its own key's ("Server failed
 * WebSocket handshake"), which herdless answers as an error: Node makes that check itself (core
 * `switchFault`), so on neither runtime does a `101` that is no switch open a tunnel. Both sides
 * are accepted here and joined message for message (text stays text, binary binary; a close on either side closes the other with
 * its code and reason), so the isolate counts the tunnel (`origin.maxWebSockets`) and closes
 * one that carries nothing for `origin.webSocketIdleTimeoutMs`. Any other answer (a `403`,
 * herdless's `503`) is the client's as it is.
 *
 * @example
 * if (opensTunnel(config, request.method, url.pathname, request.headers)) return webSocketTunnel(engine, request, isolate);
 */
export async function webSocketTunnel(engine: Engine, request: Request, isolate: ReadyIsolate): Promise<Response> {
  const opening = await engine.tunnel(toEngineRequest(request), isolate.tunnels);
  if (opening.kind === "answer") return toResponse(opening.response);
  const origin = opening.connection.webSocket;
  if (!origin) {
    opening.close();
    return new Response("herdless: the origin switched protocols without a WebSocket\n", { status: 502 });
  }
  const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
  join(server, origin, isolate.config.origin.webSocketIdleTimeoutMs, opening.close);
  const headers = opening.response.headers.filter(([name]) => !HANDSHAKE_FIELDS.has(name));
  return new Response(null, { status: 101, webSocket: client, headers });
}

/**
 * Joins two accepted WebSockets: each message is sent on to the other side, a close or an
 * error on one closes the other, and `idleMs` without a message closes both. `closed` runs
 * once, when both are closed.
 */
function join(a: WebSocket, b: WebSocket, idleMs: number, closed: () => void): void {
  for (const socket of [a, b]) {
    socket.accept();
    // Binary messages as bytes, which send() takes (a Blob, the standard's default, it does not).
    socket.binaryType = "arraybuffer";
  }
  let timer: ReturnType<typeof setTimeout> | null = null;
  const ended = new Set<WebSocket>();
  const end = (socket: WebSocket, code?: number, reason?: string) => {
    if (ended.has(socket)) return;
    ended.add(socket);
    try {
      if (code === undefined || UNSENDABLE_CLOSE.has(code)) socket.close();
      else socket.close(code, reason);
    } catch {
      // Already closed or closing: nothing to tell it.
    }
    if (ended.size === 2) {
      clearTimeout(timer);
      closed();
    }
  };
  const idle = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      end(a, 1001, "idle");
      end(b, 1001, "idle");
    }, idleMs);
  };
  idle();
  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    from.addEventListener("message", (event) => {
      idle();
      try {
        to.send(event.data);
      } catch {
        end(from, 1011, "the other side is gone");
        end(to);
      }
    });
    from.addEventListener("close", (event) => {
      end(from, event.code, event.reason);
      end(to, event.code, event.reason);
    });
    from.addEventListener("error", () => {
      end(from);
      end(to, 1011, "the other side failed");
    });
  }
}
