import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";

/**
 * What node:http keeps on a client connection: the answer being written now (the first of
 * those not finished: the ones behind it wait in node:http's queue, each assigned in turn as
 * the one before finishes) and the request its parser is reading.
 */
type Connection = Duplex & {
  _httpMessage?: ServerResponse | null;
  parser?: { incoming?: IncomingMessage | null } | null;
  [STOPPED]?: true;
};

const STOPPED = Symbol("herdless.requestsStopped");

/**
 * Runs `then` once every request read before on `socket` has had its answer written
 * (at once when none is waiting), so that what it writes keeps their order (RFC 9112 §9.3:
 * a server answers pipelined requests in the order they came). `refused`, a request whose
 * answer `then` writes itself, is not waited for. Never runs if the connection closes first.
 *
 * @example
 * afterEarlierAnswers(socket, undefined, () => socket.end(refusal));
 */
export function afterEarlierAnswers(socket: Duplex, refused: IncomingMessage | undefined, then: () => void): void {
  const current = (socket as Connection)._httpMessage;
  if (!current || current.req === refused) return then();
  // node:http's own 'finish' listener, added first, has handed the socket to the next answer by then.
  current.once("finish", () => afterEarlierAnswers(socket, refused, then));
}

/**
 * Marks a connection whose answers end with one that closes it: a request read on it
 * afterwards is never started (RFC 9112 §9.6: a server that closes after an answer must not
 * process the requests behind it). The client never gets their answers, so it may send them
 * again on another connection: started here, a non-idempotent one would run twice, and what
 * it wrote (a refused request's body meant for no one) would reach the origin.
 *
 * @example
 * stopRequests(req.socket); res.shouldKeepAlive = false;
 */
export function stopRequests(socket: Duplex): void {
  (socket as Connection)[STOPPED] = true;
}

/** Whether {@link stopRequests} marked this connection. */
export function requestsStopped(socket: Duplex): boolean {
  return (socket as Connection)[STOPPED] === true;
}

/**
 * Answers a request Node's parser refused (`clientError`) in its turn: after the answers of
 * the requests read before it on the connection (a cold miss still being fetched), then the
 * connection closes. Written at once, it went out ahead of them: the client took it for the
 * earlier request's answer (and lost that one), each answer paired with the wrong request.
 * When the refused request's own answer had begun (the parser refused its body after the
 * handler answered its head), the connection is cut instead, as Node cuts it. Once per
 * connection: the parser refuses every byte read after.
 *
 * @example
 * server.on("clientError", (error, socket) => refuseInTurn(socket, rawAnswer(parseRefusal(error))));
 */
export function refuseInTurn(socket: Duplex, answer: string): void {
  if (requestsStopped(socket)) return;
  stopRequests(socket);
  const reading = (socket as Connection).parser?.incoming;
  // Refused in its body: that request's answer is the refusal.
  const refused = reading && !reading.complete ? reading : undefined;
  afterEarlierAnswers(socket, refused, () => {
    // An earlier answer that closes the connection has closed it already.
    if (!socket.writable) return;
    // Closed once the answer is written: a client that never closes its side keeps no socket open.
    if ((socket as Connection)._httpMessage?.headersSent) socket.destroy();
    else socket.end(answer, () => socket.destroy());
  });
}
