import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import type { EngineRequest } from "../core/engine.ts";
import type { Scheme } from "../core/http/request-check.ts";
import { requestUrl } from "./hit-path.ts";
import { headerReader, lowercased } from "./request-fields.ts";
import { interimWriter } from "./interim-response.ts";

/**
 * A node:http request as the engine sees it, `scheme` the client's (hit-path `clientScheme`);
 * the origin's interim answers to it are written to `res` ({@link interimWriter}), when there is one.
 *
 * @example
 * const response = await engine.handle(toEngineRequest(req, res, metrics.started(), "http:"));
 */
export function toEngineRequest(
  req: IncomingMessage,
  res: ServerResponse | undefined,
  receivedAt: number,
  scheme: Scheme,
): EngineRequest {
  const rawHeaders = lowercased(req.rawHeaders);
  const method = req.method ?? "GET";
  // RFC 9112 §6.3: without Content-Length or Transfer-Encoding there is no content to relay.
  const framed = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined;
  const body = method === "GET" || method === "HEAD" || !framed ? null : (Readable.toWeb(req) as ReadableStream);
  if (body && res) readPastUnread(req, res);
  let signal: AbortSignal | undefined;
  return {
    method,
    url: requestUrl(req, scheme),
    headers: headerReader(req.headers, req.rawHeaders),
    rawHeaders,
    body,
    clientAddress: req.socket.remoteAddress,
    receivedAt,
    onInterim: res && interimWriter(req, res),
    // Made when first asked (by a relay): most answers never look, and need no listener or controller.
    get signal() {
      return (signal ??= res && hangUpSignal(req, res));
    },
  };
}

/**
 * Once the answer is written, reads past the rest of a body nobody takes any more (an upload
 * refused after its first bytes were read: the queue full, the breaker open), as node:http
 * does for a request no one read. Its web stream had begun reading it (`Readable.toWeb`),
 * which tells node:http the request is being consumed: node:http left the unread bytes on the
 * kept-alive connection, where the client's next request waited behind them, never parsed,
 * never answered. Whoever read it stopped: the answer is all written, so the origin call it
 * went to (if any) is over.
 */
function readPastUnread(req: IncomingMessage, res: ServerResponse): void {
  res.once("finish", () => {
    if (req.complete || req.destroyed) return;
    req.removeAllListeners("data");
    req.resume();
  });
}

/** The reason a request's signal aborts with: an error, as a fetch aborted by it rejects with its reason. */
const hungUp = () => new Error("the client hung up before its answer");

/** The requests of each connection whose answers are not finished: aborted together when it closes. */
const pendingOn = new WeakMap<Socket, Set<AbortController>>();

/**
 * Aborts when the client's connection closes before its answer was all written (at once if
 * it has closed already: made when first asked, the signal may come after the hang-up). The
 * answer's 'close' tells for the request being answered; a pipelined request waiting its
 * turn has no socket on its answer yet, so its connection's 'close' tells for it (one
 * listener per connection, not one per request). The request's own 'close' cannot: Node
 * emits it as soon as a body has been read.
 */
function hangUpSignal(req: IncomingMessage, res: ServerResponse): AbortSignal {
  const hangUp = new AbortController();
  const socket = req.socket;
  // Gone already: its 'close' came and went before the signal was asked for.
  if (socket.destroyed || (res.destroyed && !res.writableFinished)) {
    hangUp.abort(hungUp());
    return hangUp.signal;
  }
  let pending = pendingOn.get(socket);
  if (!pending) {
    const set = new Set<AbortController>();
    pendingOn.set(socket, set);
    socket.once("close", () => {
      for (const each of set) each.abort(hungUp());
      set.clear();
    });
    pending = set;
  }
  pending.add(hangUp);
  res.once("close", () => {
    pending.delete(hangUp);
    if (!res.writableFinished) hangUp.abort(hungUp());
  });
  return hangUp.signal;
}
