import { maxHeaderSize, METHODS } from "node:http";
import { synthetic, type EngineResponse } from "../core/http/respond.ts";

/** What Node's HTTP server hands to `clientError` for a request its parser refused (llhttp's `HPE_*` codes). */
export interface ClientError extends Error {
  code?: string;
  /** llhttp's words for the fault, e.g. "Invalid header token". */
  reason?: string;
  /**
   * The bytes the parser was given in the read that failed: from the start of the refused
   * request, or from an earlier request on the connection read in the same packet.
   */
  rawPacket?: Buffer;
  /** How many bytes of `rawPacket` the parser took before it failed. */
  bytesParsed?: number;
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
      const target = overlongTarget(refusedHead(error));
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
      const method = refusedMethod(error);
      // A method Node knows is no unknown method: the bytes before it were something else
      // (the rest of a body longer than its Content-Length said).
      if (TOKEN.test(method) && !KNOWN_METHODS.has(method))
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

const KNOWN_METHODS = new Set(METHODS);

/**
 * Whether the head the parser refused is a `HEAD` request's, whose answer carries no body
 * (RFC 9110 §9.3.2): its request line was read whole before the fault. Undefined bytes, or a
 * head that arrived in pieces (the packet does not start with it), read as not a `HEAD`.
 *
 * @example
 * refusedHeadRequest(error); // true for `HEAD /p HTTP/1.1\r\nBad Field: x`
 */
export function refusedHeadRequest(error: ClientError): boolean {
  return refusedHead(error)?.toString("latin1", 0, 5) === "HEAD ";
}

/**
 * The refused request's method: the token from where the parser's method began to the byte it
 * stopped at, and on. The packet may start with requests read before it (pipelined in one
 * write), whose method is not the refused one's: read from the packet's start, the 501 after
 * a `GET` answered on the connection named `GET` for bytes that were no method (`\0x /`), or
 * that were `get`. Nor is every token byte before it the method's: the parser takes before the
 * byte it stops at only the start of a method it knows (`GE` of `GEX`, `F` of `FOO`), in
 * capitals, `-` or `_`, so the rest of a body longer than its Content-Length (`xxxx` for 3
 * bytes) is named `xGET`, not the body's bytes and the method together.
 */
function refusedMethod(error: ClientError): string {
  const raw = error.rawPacket;
  if (!raw) return "";
  const stop = Math.min(error.bytesParsed ?? 0, raw.length);
  let start = stop;
  while (start > 0 && stop - start < LONGEST_METHOD && isMethodByte(raw[start - 1]!)) start--;
  return raw.toString("latin1", start, start + 64).split(" ", 1)[0] ?? "";
}

/** Longer than any method llhttp knows (its longest, the RTSP `GET_PARAMETER`, is 13 bytes). */
const LONGEST_METHOD = 16;

/** A byte of a method llhttp knows: a capital letter, `-` (`M-SEARCH`) or `_` (`GET_PARAMETER`). */
function isMethodByte(byte: number): boolean {
  return (byte >= 0x41 && byte <= 0x5a) || byte === 0x2d || byte === 0x5f;
}

/**
 * The refused request's head in the packet: after the last blank line before the byte the
 * parser stopped at (the end of the head before it, when requests came pipelined in one
 * write), else the whole packet. Read from the packet's start, a long target of the request
 * before made a 431 a 414, and a long target of the refused one was a 431.
 */
function refusedHead(error: ClientError): Buffer | undefined {
  const raw = error.rawPacket;
  if (!raw) return undefined;
  const at = Math.min(error.bytesParsed ?? raw.length, raw.length);
  // A negative offset would count from the end of the packet.
  const crlf = at < 4 ? -1 : raw.lastIndexOf("\r\n\r\n", at - 4);
  const lf = at < 2 ? -1 : raw.lastIndexOf("\n\n", at - 2);
  const end = Math.max(crlf < 0 ? -1 : crlf + 4, lf < 0 ? -1 : lf + 2);
  return end > 0 ? raw.subarray(end) : raw;
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
