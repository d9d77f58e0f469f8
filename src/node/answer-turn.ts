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

/** A request with the answer node:http made for it (Node links the answer to its request only). */
type Answered = IncomingMessage & { [ANSWER]?: ServerResponse };

const STOPPED = Symbol("herdless.requestsStopped");
const ANSWER = Symbol("herdless.answer");

/**
 * Remembers `res` as the answer to `req`, so that {@link refuseInTurn} can tell a request
 * whose body the parser refuses after its answer was written. One property: the hit path
 * pays no map and no listener for it.
 *
 * @example
 * server.on("request", (req, res) => { answerOf(req, res); handler(req, res); });
 */
export function answerOf(req: IncomingMessage, res: ServerResponse): void {
  (req as Answered)[ANSWER] = res;
}

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
 * The request whose body the parser is reading on `socket`, undefined between requests (a
 * refusal then is for the head of the next one).
 *
 * @example
 * refusedInBody(socket)?.method; // "POST": a malformed chunk in its body
 */
export function refusedInBody(socket: Duplex): IncomingMessage | undefined {
  const reading = (socket as Connection).parser?.incoming;
  return reading && !reading.complete ? reading : undefined;
}

/**
 * Answers a request Node's parser refused (`clientError`) in its turn: after the answers of
 * the requests read before it on the connection (a cold miss still being fetched), then the
 * connection closes. Written at once, it went out ahead of them: the client took it for the
 * earlier request's answer (and lost that one), each answer paired with the wrong request.
 * When the refused request's own answer had begun (the parser refused its body after the
 * handler answered its head), the connection is cut instead, as Node cuts it; when it was
 * written whole, the connection closes behind it with no second answer. Once per
 * connection: the parser refuses every byte read after.
 *
 * @example
 * server.on("clientError", (error, socket) => refuseInTurn(socket, rawAnswer(parseRefusal(error))));
 */
export function refuseInTurn(socket: Duplex, answer: string): void {
  if (requestsStopped(socket)) return;
  stopRequests(socket);
  // Refused in its body: that request's answer is the refusal.
  const refused = refusedInBody(socket);
  if (refused && (refused as Answered)[ANSWER]?.writableEnded) {
    // Refused in the body of a request answered already (a hit, a refusal, a 405: answered
    // without reading the body): it has had its one answer. A second, the 400, was taken by
    // the client (or a proxy reusing the connection) for the answer to its next request,
    // every answer after it paired with the wrong request. The connection closes once the
    // answers written are sent, with nothing more on it.
    afterEarlierAnswers(socket, undefined, () => {
      if (socket.writable) socket.end(() => socket.destroy());
    });
    return;
  }
  afterEarlierAnswers(socket, refused, () => {
    // An earlier answer that closes the connection has closed it already.
    if (!socket.writable) return;
    // Closed once the answer is written: a client that never closes its side keeps no socket open.
    if ((socket as Connection)._httpMessage?.headersSent) socket.destroy();
    else socket.end(answer, () => socket.destroy());
  });
}
