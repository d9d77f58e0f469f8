import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { InterimListener } from "../core/origin/origin-client.ts";

/** The writer Node's own `writeEarlyHints`, `writeProcessing` and `writeContinue` use. */
type RawWriter = { _writeRaw?: (data: string, encoding: BufferEncoding) => boolean };

/**
 * How the origin's interim answers reach this client (RFC 9110 §15.2): each as it arrives,
 * before the final answer's head and never after it, as the origin sent it (status, fields
 * less the hop-by-hop ones). None to an HTTP/1.0 client, which §15.2 forbids, and none to a
 * client that has gone or already has its answer, nor to a request pipelined behind one not
 * yet answered.
 *
 * The head is written through the writer Node's `writeEarlyHints` and `writeProcessing`
 * use, which keeps an answer behind the pipelined ones before it. Those two are not used
 * themselves: `writeEarlyHints` throws on common Link values (two links in one field, a
 * quoted parameter with a space) and sends nothing for a 103 without Link, and
 * `writeProcessing` drops a 102's fields. Any 1xx (102–199) passes; one whose code Node has
 * no reason phrase for goes with an empty one (RFC 9112 §4).
 *
 * @example
 * const request = { ...engineRequest, onInterim: interimWriter(req, res) };
 */
export function interimWriter(req: IncomingMessage, res: ServerResponse): InterimListener | undefined {
  if (req.httpVersionMajor < 1 || (req.httpVersionMajor === 1 && req.httpVersionMinor < 1)) return undefined;
  const writeRaw = (res as unknown as RawWriter)._writeRaw;
  if (typeof writeRaw !== "function") return undefined;
  return (status, headers) => {
    // Behind an earlier pipelined answer (no socket yet), Node buffers the 1xx and then puts
    // the final head in front of it: the 1xx would land inside the final answer's body.
    // An interim answer is optional (§15.2), so such a client gets the final one alone.
    if (res.headersSent || res.writableEnded || res.destroyed || !res.socket) return;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n`;
    for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
    // latin1: a field's obs-text bytes leave as they arrived (Node reads them as latin1).
    writeRaw.call(res, `${head}\r\n`, "latin1");
  };
}
