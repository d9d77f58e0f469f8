import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";

/**
 * The most requests one connection may have waiting on their answers before herdless stops
 * reading more from it. Browsers do not pipeline, and clients that do keep a few requests
 * ahead; an attacker writes thousands at once.
 */
export const MAX_PIPELINED = 32;

/** The flag and parser node:http uses to stop reading a connection whose answers back up. */
type PausableSocket = Socket & {
  _paused?: boolean;
  parser?: { resume(): void } | null;
};

/**
 * Bounds the requests in flight on one connection (HTTP/1.1 pipelining). node:http reads a
 * connection as fast as it arrives and starts every request it parses, and pauses it only
 * when answers already written pile up unread: answers that are still being made (a cold
 * miss, a request waiting on a fill) weigh nothing there. One connection that wrote 100,000
 * `GET`s for a page that was being fetched (4 MB) had herdless hold 100,000 requests, ~280 MiB
 * of heap: a few megabytes more pass the heap herdless sizes from `cache.maxBytes`, where the
 * process exits, every visitor's connection with it. Past {@link MAX_PIPELINED} in flight, the connection is paused
 * as node:http pauses it (the rest of the bytes it already read is still parsed: at most one
 * read, 64 KiB), and read again once half of them are answered; nothing is refused, and a
 * client that reads its answers gets them all, in order. Called after the handler: a request
 * it answered at once (a hit, written before it returned) is done and costs one property
 * read, so the hit path pays no map and no listener per request.
 *
 * @example
 * const pipelined = pipelineBound();
 * const server = createServer((req, res) => { handler(req, res); pipelined(req, res); });
 */
export function pipelineBound(max = MAX_PIPELINED): (req: IncomingMessage, res: ServerResponse) => void {
  const inFlight = new WeakMap<Socket, number>();
  return (req, res) => {
    if (res.writableEnded) return;
    const socket = req.socket as PausableSocket;
    const count = (inFlight.get(socket) ?? 0) + 1;
    inFlight.set(socket, count);
    if (count > max && !socket._paused) {
      // node:http's own protocol: the flag keeps the socket paused when a request stream asks
      // to read (onSocketResume), and the parser is paused after the bytes in hand.
      socket._paused = true;
      socket.pause();
    }
    res.once("close", () => {
      const left = (inFlight.get(socket) ?? 1) - 1;
      inFlight.set(socket, left);
      if (left > max / 2 || !socket._paused || socket.destroyed) return;
      // Answers written and not yet taken by the client: node:http resumes it once they drain.
      if (socket.writableNeedDrain) return;
      socket._paused = false;
      socket.parser?.resume();
      socket.resume();
    });
  };
}
