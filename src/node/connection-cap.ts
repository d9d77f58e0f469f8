import { readFileSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Config } from "../core/config.ts";
import type { Logger } from "./logger.ts";

/**
 * File descriptors kept for everything but client and origin connections: the ~36 a serving
 * process holds from its start (its two event loops, stdio, the listening socket), the Redis
 * connections of a fleet (a few, each one per node of a Cluster), the log, DNS lookups.
 */
const FIXED_RESERVE = 128;
/** The open-file limit assumed where `/proc/self/limits` cannot be read (macOS, Windows). */
const ASSUMED_FILE_LIMIT = 4_096;
/** An open-file limit of `unlimited`: as many as Linux gives a process by default (`fs.nr_open`). */
const UNLIMITED_FILES = 1_048_576;
/** The fewest client connections a derived cap allows, however low the open-file limit. */
const MIN_DERIVED = 32;
/** The most quiet connections closed at once for new ones (nginx's drain takes 32 too). */
const DRAIN_BATCH = 32;
/** Under pressure, one warning line per this long, with the counts since the last. */
const WARN_EVERY_MS = 60_000;

/**
 * The soft "Max open files" limit of this process, from Linux's `/proc/self/limits` (Node
 * raised it to the hard limit when it started); undefined where there is no such file.
 *
 * @example
 * openFileLimit(() => "Max open files            20000                20000                files"); // 20000
 */
export function openFileLimit(read = () => readFileSync("/proc/self/limits", "utf8")): number | undefined {
  let text: string;
  try {
    text = read();
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(text)?.[1];
  if (soft === undefined) return undefined;
  return soft === "unlimited" ? UNLIMITED_FILES : Number(soft);
}

/**
 * The client connections a process can hold and still open what a visitor's request needs:
 * the open-file limit less {@link FIXED_RESERVE}, less two per origin permit (one in flight,
 * one kept alive for the next request), less the origin side of every WebSocket tunnel (the
 * client side is a client connection, so they take at most half of what is left).
 *
 * @example
 * derivedMaxConnections(config, 20_000); // 18856 with the default origin settings
 */
export function derivedMaxConnections(config: Config, fileLimit = ASSUMED_FILE_LIMIT): number {
  const free = fileLimit - FIXED_RESERVE - 2 * config.origin.maxConcurrency;
  const tunnels = config.origin.webSockets ? Math.min(config.origin.maxWebSockets, free / 2) : 0;
  return Math.max(MIN_DERIVED, Math.floor(free - tunnels));
}

/** What node:http keeps on a socket it serves. */
type ServedSocket = Socket & {
  /** The answer being written, or the first of those queued behind it; null when none is. */
  _httpMessage?: ServerResponse | null;
  /** node:http's parser while it reads HTTP from the socket; null once handed over (upgrade, CONNECT). */
  parser?: unknown;
};

/** How {@link capConnections} learns the open-file limit and the time; tests pass their own. */
export interface CapSources {
  fileLimit?: number | undefined;
  now?: () => number;
}

/**
 * Caps the client connections of a node:http server, as nginx's `worker_connections`, at
 * `server.maxConnections` (else {@link derivedMaxConnections}), and returns the cap. A process
 * whose open files run out can open no origin connection for anyone, and accepts no visitor
 * either (19,990 idle sockets took all 20,000). Past the cap, quiet connections are closed
 * for the new one, oldest first, as nginx reuses its idle ones: first those kept alive with
 * nothing asked since their last answer (or nothing asked at all), then those still sending
 * a request head. One with an answer under way, or a WebSocket tunnel (capped on its own by
 * `origin.maxWebSockets`), is never closed; when every one is, the new connection is closed
 * instead. Below the cap nothing changes: kept-alive connections last the server's
 * `keepAliveTimeout`. Not Node's `server.maxConnections`: it drops the new connection without
 * closing an idle one, so idle sockets would keep every visitor out.
 *
 * @example
 * const maxConnections = capConnections(server, config, logger);
 */
export function capConnections(server: Server, config: Config, logger: Logger, sources: CapSources = {}): number {
  const fileLimit = "fileLimit" in sources ? sources.fileLimit : openFileLimit();
  const max = config.server.maxConnections ?? derivedMaxConnections(config, fileLimit);
  const fits = derivedMaxConnections(config, fileLimit ?? Infinity);
  if (max > fits)
    logger.warn("server.maxConnections leaves too few open files for the origin: raise the limit (ulimit -n)", {
      maxConnections: max,
      openFileLimit: fileLimit,
      fits,
    });
  trackConnections(server, max, pressureLog(max, logger, sources.now ?? Date.now));
  return max;
}

/** When a connection last fell quiet (every answer written), and how many bytes it had read then. */
interface Quiet {
  order: number;
  bytesRead: number;
}

function trackConnections(server: Server, max: number, pressure: (closed: Closed) => void): void {
  const open = new Map<ServedSocket, Quiet>();
  let order = 0;
  const quieted = (socket: ServedSocket) => {
    const quiet = open.get(socket);
    if (!quiet) return;
    quiet.order = ++order;
    quiet.bytesRead = socket.bytesRead;
  };
  server.on("connection", (socket: ServedSocket) => {
    // A request the upgrade listener hands back (tunnel.ts) comes as a connection again.
    if (open.has(socket)) return;
    open.set(socket, { order: ++order, bytesRead: 0 });
    socket.once("close", () => open.delete(socket));
    if (open.size <= max) return;
    const closed = closeQuiet(open, socket, open.size - max);
    pressure(closed);
    if (closed.idle + closed.unfinished === 0) socket.destroy();
  });
  // A request answered before the listeners return (a hit) is quiet now; another when its answer ends.
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (res.writableEnded) quieted(req.socket);
    else res.once("close", () => quieted(req.socket));
  });
}

interface Closed {
  idle: number;
  unfinished: number;
}

/** Closes at least `needed` quiet connections (more, up to a batch, so the next arrivals find room), oldest first. */
function closeQuiet(open: Map<ServedSocket, Quiet>, newcomer: ServedSocket, needed: number): Closed {
  const idle: [ServedSocket, number][] = [];
  const unfinished: [ServedSocket, number][] = [];
  for (const [socket, quiet] of open) {
    if (socket === newcomer || socket._httpMessage || !socket.parser) continue;
    (socket.bytesRead === quiet.bytesRead ? idle : unfinished).push([socket, quiet.order]);
  }
  const byAge = (a: [ServedSocket, number], b: [ServedSocket, number]) => a[1] - b[1];
  const chosen = [...idle.sort(byAge), ...unfinished.sort(byAge)].slice(
    0,
    Math.max(needed, Math.min(DRAIN_BATCH, Math.ceil(open.size / 64))),
  );
  for (const [socket] of chosen) socket.destroy();
  const idleClosed = Math.min(chosen.length, idle.length);
  return { idle: idleClosed, unfinished: chosen.length - idleClosed };
}

/** A warning at most every {@link WARN_EVERY_MS} while the cap is reached, counting what it did (nginx: "worker_connections are not enough"). */
function pressureLog(max: number, logger: Logger, now: () => number): (closed: Closed) => void {
  let counts = { idle: 0, unfinished: 0, refused: 0 };
  let lastAt = -Infinity;
  return (closed) => {
    counts.idle += closed.idle;
    counts.unfinished += closed.unfinished;
    if (closed.idle + closed.unfinished === 0) counts.refused++;
    if (now() - lastAt < WARN_EVERY_MS) return;
    lastAt = now();
    logger.warn("client connections at server.maxConnections: closing idle ones, refusing when all are busy", {
      maxConnections: max,
      closedIdle: counts.idle,
      closedUnfinishedHeads: counts.unfinished,
      refused: counts.refused,
    });
    counts = { idle: 0, unfinished: 0, refused: 0 };
  };
}
