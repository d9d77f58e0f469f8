import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import type { Duplex } from "node:stream";
import type { OriginFetchInit } from "../core/origin/origin-client.ts";

/**
 * Connections to the origin are reused for relayed requests ({@link ownConnection} says which
 * go on one of their own): one origin, many requests. An idle one is closed
 * after 4 s, or 1 s before the origin's `Keep-Alive: timeout=` hint when that comes sooner
 * (Node's agent reads the hint only under a `timeout`): a request written on a connection
 * the origin is closing at that moment would fail with a reset, which counts against the
 * breaker. 4 s is the keep-alive timeout of undici, the client herdless used before.
 */
const agentOptions = { keepAlive: true, timeout: 4_000 };

const httpAgent = unaskedBytesDrop(new HttpAgent(agentOptions));
const httpsAgent = unaskedBytesDrop(new HttpsAgent(agentOptions));

/**
 * For a request that goes on a connection of its own, closed after its answer (`Connection:
 * close`). Shared rather than `agent: false`, so that TLS sessions are resumed (an https
 * agent keeps them whatever its keep-alive).
 */
const freshHttpAgent = new HttpAgent({ keepAlive: false });
const freshHttpsAgent = new HttpsAgent({ keepAlive: false });

/**
 * The agent a request to the origin goes through: a kept-alive connection of the pool, or
 * one of its own (`fresh`, or {@link ownConnection}), closed after its answer.
 *
 * @example
 * request(url, { agent: originAgent(init, url.protocol === "https:", false) });
 */
export function originAgent(init: OriginFetchInit, secure: boolean, fresh: boolean): HttpAgent {
  if (fresh || ownConnection(init)) return secure ? freshHttpsAgent : freshHttpAgent;
  return secure ? httpsAgent : httpAgent;
}

/**
 * Whether a request goes on a connection of its own, closed after its answer. Bytes an
 * origin writes past an answer's end (past its Content-Length, a body after a HEAD's head or
 * a 304) are read as the next answer on that connection when they arrive after the next
 * request is written: no client can tell them from it, however soon after the previous answer
 * it checks the connection (an idle one the origin writes on is closed: {@link unaskedBytesDrop}).
 * So only a request whose answer goes to its own client and is never stored
 * (`reuseConnection`: a relayed one) is sent on a kept-alive connection: a fill, whose answer
 * is stored for everyone, never is. A HEAD and an upload never are either: bytes after a
 * HEAD's head, or an upload the origin answered unread, are left on the connection.
 */
function ownConnection(init: OriginFetchInit): boolean {
  return init.reuseConnection !== true || init.method === "HEAD" || (init.body !== null && init.body !== undefined);
}

/**
 * A kept-alive connection on which the origin writes while no request is out is closed, as
 * nginx closes such an upstream connection. Node's agent would otherwise let those bytes go
 * unheard or, once the connection is handed to the next request, read them as its answer: an
 * origin that sent a body after a HEAD's head, or wrote past its Content-Length a moment
 * late, had that text stored as another URL's page for everyone (before fills went on
 * connections of their own), or given to another visitor as their page.
 */
function unaskedBytesDrop<A extends HttpAgent>(agent: A): A {
  const keep = agent.keepSocketAlive.bind(agent);
  const reuse = agent.reuseSocket.bind(agent);
  agent.keepSocketAlive = (socket: Duplex) => {
    const kept: unknown = keep(socket);
    socket.on("data", closeUnasked);
    return kept as void;
  };
  agent.reuseSocket = (socket, request) => {
    socket.off("data", closeUnasked);
    reuse(socket, request);
  };
  return agent;
}

function closeUnasked(this: Duplex): void {
  this.destroy();
}
