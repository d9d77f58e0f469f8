import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isIPv6, type AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { notAllowed } from "../core/http/failure-answer.ts";
import type { EngineResponse } from "../core/http/respond.ts";
import {
  afterEarlierAnswers,
  answerOf,
  refusedInBody,
  refuseInTurn,
  requestsStopped,
  stopRequests,
} from "./answer-turn.ts";
import { capConnections } from "./connection-cap.ts";
import { createHandler } from "./handler.ts";
import { parseRefusal, refusedHeadRequest, unmetExpectation, type ClientError } from "./parse-refusal.ts";
import { pipelineBound } from "./pipeline-bound.ts";
import { tunnelUpgrades } from "./tunnel.ts";
import type { Logger } from "./logger.ts";
import type { Stack } from "./stack.ts";

export interface ServerOptions {
  stack: Stack;
  logger: Logger;
  port?: number;
  host?: string;
  /** Answer fresh hits on the synchronous hit path (default true); false sends every request through the engine. */
  fastHits?: boolean;
  /** On close, requests still running after this long are cut off. Default 10000. */
  drainTimeoutMs?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  server: Server;
  /** Client connections held at once: `server.maxConnections`, or derived from the open-file limit. */
  maxConnections: number;
  /**
   * Stops accepting connections, closes WebSocket tunnels, lets in-flight requests finish (up
   * to `drainTimeoutMs`), closes keep-alive connections as they fall idle, then closes the
   * stack. Idempotent.
   */
  close(): Promise<void>;
}

const IDLE_SWEEP_MS = 25;

/**
 * Node loads undici (behind `fetch`, `Response`, `Headers`) the first time one is touched:
 * 150–230 ms of compiling on a 2-core machine. Left to the first cold miss, every request
 * collapsed on that miss waits for it too (a spike on a cold key). Reading one of these
 * globals is enough to load it; the server pays it before it listens instead.
 */
function loadLazyGlobals(): void {
  void [globalThis.Response, globalThis.Headers, globalThis.ReadableStream];
}

/**
 * The reverse proxy: Node's http server answering every request with {@link createHandler}.
 * Fresh hits are written synchronously from the process LRU; everything else goes through
 * the engine, and its answers are written from the stored status, headers and bytes, or
 * piped with back-pressure when streamed.
 *
 * @example
 * const running = await startServer({ stack: localStack({ config, logger }), logger, port: 8787 });
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { stack, logger } = options;
  loadLazyGlobals();
  const handler = createHandler({ stack, logger, fastHits: options.fastHits });
  let closing: Promise<void> | undefined;
  const pipelined = pipelineBound();
  // RFC 9112 §3.2: an HTTP/1.1 request without Host is refused by the handler, with a 400 naming
  // it (missingHostRefusal); node:http's own is an empty 400.
  const server = createServer({ keepAliveTimeout: 65_000, requireHostHeader: false });
  const cap = capConnections(server, stack, logger);
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    // Behind an answer that closes the connection: never started (stopRequests).
    if (requestsStopped(req.socket)) return;
    // Once closing, every answer ends its connection, so keep-alive clients go elsewhere.
    if (closing) {
      res.shouldKeepAlive = false;
      stopRequests(req.socket);
    }
    answerOf(req, res);
    handler(req, res);
    pipelined(req, res);
    cap.answered(req, res);
  });
  // Every field of a request is counted: node:http keeps the first 2,000 and drops the rest
  // unheard, so a Cookie or Authorization after them went unseen and unsent. The handler
  // refuses such a request (fieldCountRefusal), which it can only tell when it sees them all.
  server.maxHeadersCount = 0;
  // WebSockets pass through to the origin; every other upgrade is answered as if never asked.
  const tunnels = tunnelUpgrades(server, stack, logger, () => closing !== undefined);
  refuseConnect(server);
  answerExpectations(server);
  answerRefusals(server);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8787, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host ?? "127.0.0.1";
  // RFC 3986 §3.2.2: an IPv6 address in a URL is bracketed, or its colons read as the port's.
  const url = `http://${isIPv6(host) ? `[${host}]` : host}:${port}`;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  return {
    url,
    port,
    server,
    maxConnections: cap.max,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // A tunnel never finishes on its own: cut now, its client reconnects to another process.
        tunnels.closeAll();
        // A connection that finishes its last response while we drain falls idle: close it then.
        const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
        const deadline = setTimeout(() => server.closeAllConnections(), drainTimeoutMs);
        server.closeIdleConnections();
        await closed;
        clearInterval(sweep);
        clearTimeout(deadline);
        await stack.close();
      })()),
  };
}

/**
 * An engine answer with a complete body as HTTP/1.1 bytes, for a socket no ServerResponse
 * owns; without the body for a `HEAD` (`forHead`), its Content-Length the body's, as a GET's.
 */
function rawAnswer(answer: EngineResponse, forHead = false): string {
  const body = !forHead && answer.body instanceof Uint8Array ? new TextDecoder().decode(answer.body) : "";
  const head = answer.headers.map(([name, value]) => `${name}: ${value}\r\n`).join("");
  return `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? ""}\r\n${head}connection: close\r\n\r\n${body}`;
}

/**
 * RFC 9110 §9.3.6: herdless is a reverse proxy and opens no tunnels. Without a listener Node
 * drops a CONNECT's socket silently; the client gets a 405 naming the method instead, in its
 * turn behind the answers to the requests read before it on the connection: written at
 * once, it went out in place of the answer to a request still being fetched (a cold miss),
 * which its client took for that request's answer, and the connection closed with the
 * earlier answers never sent.
 */
function refuseConnect(server: Server): void {
  server.on("connect", (_req: IncomingMessage, socket: Duplex) => {
    // node:http hands the socket over without its 'error' listener: a client that resets it as the
    // answer is written must not raise an unheard 'error' (it ended the process).
    socket.on("error", () => socket.destroy());
    afterEarlierAnswers(socket, undefined, () => {
      // Behind an answer that closed the connection (a 417's): nothing more is answered there.
      if (socket.writable && !requestsStopped(socket)) socket.end(rawAnswer(notAllowed("CONNECT")));
    });
  });
}

/**
 * A request Node's parser refuses never reaches the handler, and Node's own answer is an
 * empty 400: the client is told what was wrong instead, in its turn behind the answers to
 * the requests before it on the connection.
 */
function answerRefusals(server: Server): void {
  // A HEAD's refusal has no body (RFC 9110 §9.3.2): a client reads none, and took the bytes
  // for what came next on the connection.
  server.on("clientError", (error: ClientError, socket: Duplex) => {
    const inBody = refusedInBody(socket);
    const head = inBody ? inBody.method === "HEAD" : refusedHeadRequest(error);
    refuseInTurn(socket, rawAnswer(parseRefusal(error), head));
  });
}

/** RFC 9110 §10.1.1: what a request's `Expect` gets. */
function answerExpectations(server: Server): void {
  // RFC 9110 §10.1.1: an expectation other than 100-continue is a 417 naming it (Node's own is
  // empty); the connection closes, since the request's body, if any, is never read.
  // Whatever the client wrote behind it (the body it may or may not have sent, requests after)
  // is never started (stopRequests).
  server.on("checkExpectation", (req: IncomingMessage, res: ServerResponse) => {
    if (requestsStopped(req.socket)) return;
    stopRequests(req.socket);
    const answer = unmetExpectation(req.headers.expect ?? "");
    res.shouldKeepAlive = false;
    res.writeHead(answer.status, answer.headers).end(answer.body);
  });
  // Node's own `100 Continue`, as it would send it, but not to a request pipelined behind one
  // not yet answered: Node buffers it and puts the final head in front, inside that body.
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => {
    if (requestsStopped(req.socket)) return;
    if (res.socket) res.writeContinue();
    server.emit("request", req, res);
  });
}
