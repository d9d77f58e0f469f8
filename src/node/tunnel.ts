import { ServerResponse, type IncomingMessage, type Server } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { synthetic, type EngineResponse } from "../core/http/respond.ts";
import { afterEarlierAnswers, requestsStopped } from "./answer-turn.ts";
import { opensTunnel, TunnelSlots } from "../core/origin/tunnel.ts";
import { keyFault } from "../core/origin/websocket-handshake.ts";
import { toEngineRequest } from "./engine-request.ts";
import { requestRefusal } from "./handler.ts";
import { clientScheme, requestUrl, trustsForwardedProto } from "./hit-path.ts";
import { emptyScan, headerReader, scanFields } from "./request-fields.ts";
import type { Logger } from "./logger.ts";
import { upgradedSocket } from "./origin-fetch.ts";
import type { Stack } from "./stack.ts";
import { write } from "./write-answer.ts";

/** After one side of a tunnel closed, how long the other has to finish sending before it is cut. */
const CLOSE_LINGER_MS = 5_000;

/** The WebSocket tunnels of one server: {@link tunnelUpgrades}. */
export interface ServerTunnels {
  /** Ends every tunnel and handshake at once (the server is closing: clients reconnect elsewhere). */
  closeAll(): void;
}

/**
 * WebSocket pass-through for a node:http server. node:http hands every request that asks to
 * upgrade (`Connection: upgrade` with an `Upgrade`) to this listener with its socket, no longer
 * parsed as HTTP. A WebSocket handshake (core `opensTunnel`, in HTTP/1.1) is relayed to the
 * origin by the engine (`Engine.tunnel`: the guard, the forwarded headers); on its `101` the
 * two sockets are joined byte for byte until either side closes, bounded by
 * `origin.maxWebSockets` open at once and `origin.webSocketIdleTimeoutMs` without a byte.
 * Any other answer is the client's, on a connection then closed. Every other request (an
 * `h2c` upgrade, an admin path, `origin.webSockets` off, a malformed request) goes back to the
 * server as the ordinary request it is ({@link asOrdinaryRequest}), answered as if it had
 * never asked.
 *
 * @example
 * const tunnels = tunnelUpgrades(server, stack, logger, () => closing !== undefined);
 */
export function tunnelUpgrades(server: Server, stack: Stack, logger: Logger, closing: () => boolean): ServerTunnels {
  const { config } = stack;
  const slots = new TunnelSlots(() => config.origin.maxWebSockets);
  const sockets = new Set<Duplex>();
  const trusted = trustsForwardedProto(config);
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) =>
    inTurn(socket, () => upgrade(req, socket, head)),
  );
  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const fields = scanFields(req.rawHeaders, emptyScan());
    const scheme = clientScheme(req, trusted, fields.proto);
    const tunnelled =
      !closing() &&
      req.httpVersion === "1.1" &&
      requestRefusal(req, fields) === undefined &&
      opensTunnel(
        config,
        req.method ?? "GET",
        requestUrl(req, scheme).pathname,
        headerReader(req.headers, req.rawHeaders),
      );
    if (!tunnelled) return asOrdinaryRequest(server, req, socket, head);
    // No key, no switch to check (origin-fetch.ts `verified`): a 400, never a tunnel (keyFault).
    const fault = keyFault(req.headers["sec-websocket-key"]);
    if (fault !== undefined)
      return void answer(req, socket as Socket, synthetic(400, fault, { detail: "refused" })).catch(() =>
        socket.destroy(),
      );
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    const startedAt = stack.metrics.started();
    tunnel(stack, req, socket as Socket, head, toEngineRequest(req, undefined, startedAt, scheme), slots).catch(
      (error: unknown) => {
        logger.error("websocket tunnel failed", { url: req.url, error: String(error) });
        socket.destroy();
      },
    );
  };
  return {
    closeAll: () => {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/**
 * Runs `then` once the requests read before the upgrade on this connection have their answers
 * written: a 101, a tunnel's bytes or the request given back to the server went out ahead of
 * them (or, given back, waited behind them in a queue no one served until the keep-alive
 * timeout). node:http handed the socket over without its 'error' listener: a client that
 * resets it meanwhile must not raise an unheard 'error' (it ends the process).
 */
function inTurn(socket: Duplex, then: () => void): void {
  const reset = () => socket.destroy();
  socket.on("error", reset);
  afterEarlierAnswers(socket, undefined, () => {
    socket.off("error", reset);
    // Behind an answer that closed the connection (a 417's): never started, as no request there is.
    if (socket.writable && !requestsStopped(socket)) then();
  });
}

/** One handshake relayed, then the tunnel or the answer. */
async function tunnel(
  stack: Stack,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
  request: ReturnType<typeof toEngineRequest>,
  slots: TunnelSlots,
): Promise<void> {
  // A client that leaves during the handshake cancels it (and its wait for an origin permit).
  const gone = new AbortController();
  const leave = () => gone.abort(new Error("the client closed the connection"));
  socket.once("close", leave);
  socket.on("error", () => socket.destroy());
  const opening = await stack.engine.tunnel(request, slots, gone.signal);
  socket.off("close", leave);
  if (opening.kind === "answer") return answer(req, socket, opening.response);
  const origin = upgradedSocket(opening.connection);
  // Either side may be gone already: an origin that reset its switched connection while the
  // engine awaited would never emit the 'close' splice counts on (the slot held for good).
  if (!origin || socket.destroyed || origin.socket.destroyed) {
    origin?.socket.destroy();
    socket.destroy();
    opening.close();
    return;
  }
  socket.write(switchingHead(opening.response.headers), "latin1");
  if (origin.head.length > 0) socket.write(origin.head);
  if (head.length > 0) origin.socket.write(head);
  splice(socket, origin.socket as Socket, stack.config.origin.webSocketIdleTimeoutMs, opening.close);
}

/** The client's 101: the origin's end-to-end fields (`Sec-WebSocket-Accept` …) and Cache-Status. */
function switchingHead(headers: [string, string][]): string {
  let head = "HTTP/1.1 101 Switching Protocols\r\n";
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return `${head}upgrade: websocket\r\nconnection: Upgrade\r\n\r\n`;
}

/** An answer other than a switch, on a socket no server owns any more: written whole, then the connection closes. */
async function answer(req: IncomingMessage, socket: Socket, response: EngineResponse): Promise<void> {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  res.once("finish", () => socket.end());
  await write(res, response);
}

/**
 * Joins two sockets byte for byte, with back-pressure. Either side's end is passed on to the
 * other (a WebSocket's closing handshake then its TCP close); the other is cut once it has not
 * closed `CLOSE_LINGER_MS` later. An error on either side, or `idleMs` without a byte, ends
 * both. `closed` runs once, when both are closed.
 */
function splice(client: Socket, origin: Socket, idleMs: number, closed: () => void): void {
  const cut = () => {
    client.destroy();
    origin.destroy();
  };
  let open = 2;
  for (const [from, to] of [
    [client, origin],
    [origin, client],
  ] as const) {
    from.setNoDelay(true);
    from.setTimeout(idleMs, cut);
    from.on("error", cut);
    from.once("close", () => {
      to.end();
      setTimeout(() => to.destroy(), CLOSE_LINGER_MS).unref();
      if (--open === 0) closed();
    });
    from.pipe(to);
  }
}

/**
 * Gives a request node:http parsed as an upgrade back to the server as the ordinary request it
 * is: its head is written again without `Upgrade` (hop-by-hop: herdless never passes a client's
 * on), ahead of the bytes that followed it, and the socket is handed to the server as a new
 * connection. Its body, keep-alive and any request pipelined behind it are then parsed as
 * usual. Node's parser has freed the connection by then (no timers, no listeners of its own).
 */
function asOrdinaryRequest(server: Server, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  let start = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2)
    if (raw[i]!.toLowerCase() !== "upgrade") start += `${raw[i]}: ${raw[i + 1]}\r\n`;
  try {
    // latin1: a field's obs-text bytes go back as they arrived (Node reads them as latin1).
    socket.unshift(Buffer.concat([Buffer.from(`${start}\r\n`, "latin1"), head]));
  } catch {
    socket.destroy();
    return;
  }
  server.emit("connection", socket);
}
