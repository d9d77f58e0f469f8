import type { IncomingMessage, ServerResponse } from "node:http";
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
  return {
    method,
    url: requestUrl(req, scheme),
    headers: headerReader(req.headers),
    rawHeaders,
    body,
    clientAddress: req.socket.remoteAddress,
    receivedAt,
    onInterim: res && interimWriter(req, res),
  };
}
