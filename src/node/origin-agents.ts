import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import type { Duplex } from "node:stream";

/**
 * Connections to the origin are reused: one origin, many requests. An idle one is closed
 * after 4 s, or 1 s before the origin's `Keep-Alive: timeout=` hint when that comes sooner
 * (Node's agent reads the hint only under a `timeout`): a request written on a connection
 * the origin is closing at that moment would fail with a reset, which counts against the
 * breaker. 4 s is the keep-alive timeout of undici, the client herdless used before.
 */
const agentOptions = { keepAlive: true, timeout: 4_000 };

export const httpAgent = unaskedBytesDrop(new HttpAgent(agentOptions));
export const httpsAgent = unaskedBytesDrop(new HttpsAgent(agentOptions));

/**
 * A kept-alive connection on which the origin writes while no request is out is closed, as
 * nginx closes such an upstream connection. Node's agent would otherwise let those bytes go
 * unheard or, once the connection is handed to the next request, read them as its answer: an
 * origin that sent a body after a HEAD's head, or wrote past its Content-Length a moment
 * late, had that text stored as another URL's page for everyone.
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
