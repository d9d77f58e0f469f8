import { maxHeaderSize } from "node:http";
import { synthetic, type EngineResponse } from "../core/http/respond.ts";

/** What Node's HTTP server hands to `clientError` for a request its parser refused (llhttp's `HPE_*` codes). */
export interface ClientError extends Error {
  code?: string;
  /** llhttp's words for the fault, e.g. "Invalid header token". */
  reason?: string;
  /** The bytes the parser was given, from the start of the refused request. */
  rawPacket?: Buffer;
}

/** RFC 9110 §5.6.2 token: what a method is made of. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * The answer to a request Node's parser refuses before herdless sees it: the status Node
 * itself would give (431 for an oversized head, 414 when its request-target is the bulk of it, 413 for oversized chunk extensions, 408 for
 * a request that did not arrive in time, else 400), with a body that names the fault, where
 * Node's own answer is an empty `400 Bad Request`. A well-formed method the parser does not
 * know (`FOO`, or `get`: methods are case-sensitive) is `501` (RFC 9110 §9.1): the request
 * is not malformed, herdless cannot relay it.
 *
 * @example
 * server.on("clientError", (error, socket) => socket.end(rawAnswer(parseRefusal(error))));
 */
export function parseRefusal(error: ClientError): EngineResponse {
  switch (error.code) {
    case "HPE_HEADER_OVERFLOW": {
      // RFC 9112 §3: a request-target longer than the server will parse MUST be a 414.
      const target = overlongTarget(error.rawPacket);
      if (target !== undefined)
        return refused(
          414,
          `URI too long: the request-target (${target} bytes or more) leaves no room in this server's ${HEAD_LIMIT_BYTES / 1024} KiB request head`,
        );
      return refused(431, "request header fields too large: the request line and headers exceed this server's limit");
    }
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return refused(413, "request chunk extensions too large");
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return refused(408, "the request did not arrive in time");
    case "HPE_INVALID_METHOD": {
      const method = error.rawPacket?.toString("latin1", 0, 64).split(" ", 1)[0] ?? "";
      if (TOKEN.test(method))
        return refused(
          501,
          `method ${JSON.stringify(method)} is not implemented: herdless relays the registered HTTP methods, which are case-sensitive (GET, not get)`,
        );
      break;
    }
  }
  return refused(400, `bad request: ${error.reason ?? error.message}${error.code ? ` (${error.code})` : ""}`);
}

/**
 * The answer to an `Expect` herdless cannot meet (RFC 9110 §10.1.1): `417`, naming it. Only
 * `100-continue` is met (Node answers it, and herdless sends the body on without `Expect`).
 *
 * @example
 * unmetExpectation("x-foo").status; // 417
 */
export function unmetExpectation(expect: string): EngineResponse {
  return refused(417, `expectation ${JSON.stringify(expect)} cannot be met: only 100-continue is supported`);
}

/** Node's request-head limit (`--max-http-header-size`, 16 KiB by default): request line and fields together. */
const HEAD_LIMIT_BYTES = maxHeaderSize;

/**
 * The request-target's length when it is what overflowed the head: the refused bytes start
 * with a request line that is over half the limit, or that the limit cut before its end.
 * Undefined when the fields are the bulk (431), or when the bytes do not start with the
 * request line (the head arrived in pieces: Node hands over only the last).
 */
function overlongTarget(raw: Buffer | undefined): number | undefined {
  if (!raw) return undefined;
  const method = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ /.exec(raw.toString("latin1", 0, 32))?.[0];
  if (method === undefined) return undefined;
  const end = raw.indexOf(10);
  const line = end < 0 ? raw.length : end;
  if (end >= 0 && line <= HEAD_LIMIT_BYTES / 2) return undefined;
  // The target runs from after the method to the last space before the version, if one came.
  const version = end < 0 ? -1 : raw.lastIndexOf(32, line);
  return (version > method.length ? version : line) - method.length;
}

function refused(status: number, message: string): EngineResponse {
  return synthetic(status, message, { detail: "refused" });
}
