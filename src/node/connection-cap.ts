import { readFileSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import type { Logger } from "./logger.ts";
import type { Stack } from "./stack.ts";

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
/** At the cap, a client that has taken no byte of its answer for this long may be cut (nginx's `send_timeout`). */
const SEND_STALL_MS = 60_000;
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

/** How {@link capConnections} learns the open-file limit (`/proc/self/limits` unless given). */
export interface CapSources {
  fileLimit?: number | undefined;
}

/**
 * Caps the client connections of a node:http server, as nginx's `worker_connections`, at
 * `server.maxConnections` (else {@link derivedMaxConnections}), and returns the cap. A process
 * whose open files run out can open no origin connection for anyone, and accepts no visitor
 * either (19,990 idle sockets took all 20,000). Past the cap, quiet connections are closed
 * for the new one, as nginx reuses its idle ones: first those kept alive with nothing asked
 * since their last answer (or nothing asked at all), longest idle first; then those whose
 * client has taken no byte of its answer for {@link SEND_STALL_MS} (nginx's `send_timeout`);
 * then those still sending a request head, oldest first. Any other connection with an answer
 * under way, or a WebSocket tunnel (capped on its own by `origin.maxWebSockets`), is never
 * closed; when every one is such, the new connection is closed instead. Below the cap nothing
 * changes: kept-alive connections last the server's `keepAliveTimeout`. Not Node's
 * `server.maxConnections`: it drops the new connection without closing an idle one, so idle
 * sockets would keep every visitor out.
 *
 * @example
 * const cap = capConnections(server, stack, logger);
 * server.on("request", (req, res) => { handler(req, res); cap.answered(req, res); });
 */
export function capConnections(
  server: Server,
  stack: Pick<Stack, "config" | "clock">,
  logger: Logger,
  sources: CapSources = {},
): ConnectionCap {
  const { config, clock } = stack;
  const fileLimit = "fileLimit" in sources ? sources.fileLimit : openFileLimit();
  const max = config.server.maxConnections ?? derivedMaxConnections(config, fileLimit);
  const fits = derivedMaxConnections(config, fileLimit ?? Infinity);
  if (max > fits)
    logger.warn("server.maxConnections leaves too few open files for the origin: raise the limit (ulimit -n)", {
      maxConnections: max,
      openFileLimit: fileLimit,
      fits,
    });
  const answered = trackConnections(server, max, clock, pressureLog(max, logger, clock));
  return { max, answered };
}

/** The cap {@link capConnections} put on a server. */
export interface ConnectionCap {
  max: number;
  /**
   * Called by the server's request listener after the handler, for every request: its
   * connection is quiet once the answer is written. One listener, not a second one on
   * 'request': an event with two listeners copies its listener list on every emit.
   */
  answered(req: IncomingMessage, res: ServerResponse): void;
}

/** A connection as the cap sees it. */
interface Tracked {
  /** When it last fell quiet (every answer written): a counter, so the oldest sorts first. */
  order: number;
  /** The bytes it had read then: more since, and a request head is on its way. */
  bytesRead: number;
  /** Bytes of an answer waiting for its client to take them, and since when that many have (seen under pressure). */
  stall?: { waiting: number; since: number };
}

function trackConnections(
  server: Server,
  max: number,
  clock: Clock,
  pressure: (closed: Closed) => void,
): ConnectionCap["answered"] {
  const open = new Map<ServedSocket, Tracked>();
  let order = 0;
  const quieted = (socket: ServedSocket) => {
    const tracked = open.get(socket);
    if (!tracked) return;
    tracked.order = ++order;
    tracked.bytesRead = socket.bytesRead;
    tracked.stall = undefined;
  };
  server.on("connection", (socket: ServedSocket) => {
    // A request the upgrade listener hands back (tunnel.ts) comes as a connection again.
    if (open.has(socket)) return;
    open.set(socket, { order: ++order, bytesRead: 0 });
    socket.once("close", () => open.delete(socket));
    if (open.size <= max) return;
    const closed = closeQuiet(open, socket, open.size - max, clock.now());
    pressure(closed);
    if (!closed.refused) return;
    open.delete(socket);
    socket.destroy();
  });
  // A request answered before the listener returns (a hit) is quiet now; another when its answer ends.
  return (req, res) => {
    if (res.writableEnded) quieted(req.socket);
    else res.once("close", () => quieted(req.socket));
  };
}

type Quiet = "idle" | "stalled" | "unfinished";

/** Whether a connection may be closed for a new one, and why; undefined when it may not. */
function quietness(socket: ServedSocket, tracked: Tracked, now: number): Quiet | undefined {
  if (!socket.parser) return undefined;
  if (!socket._httpMessage) return socket.bytesRead === tracked.bytesRead ? "idle" : "unfinished";
  const waiting = socket.writableLength;
  if (waiting === 0) tracked.stall = undefined;
  else if (tracked.stall?.waiting !== waiting) tracked.stall = { waiting, since: now };
  else if (now - tracked.stall.since >= SEND_STALL_MS) return "stalled";
  return undefined;
}

interface Closed {
  idle: number;
  stalled: number;
  unfinished: number;
  refused: boolean;
}

/** Closes at least `needed` quiet connections (more, up to a batch, so the next arrivals find room). */
function closeQuiet(open: Map<ServedSocket, Tracked>, newcomer: ServedSocket, needed: number, now: number): Closed {
  const quiet = { idle: [], stalled: [], unfinished: [] } as Record<Quiet, [ServedSocket, number][]>;
  for (const [socket, tracked] of open) {
    const kind = socket === newcomer || socket.destroyed ? undefined : quietness(socket, tracked, now);
    if (kind) quiet[kind].push([socket, kind === "stalled" ? tracked.stall!.since : tracked.order]);
  }
  const closed: Closed = { idle: 0, stalled: 0, unfinished: 0, refused: false };
  let left = Math.max(needed, Math.min(DRAIN_BATCH, Math.ceil(open.size / 64)));
  for (const kind of ["idle", "stalled", "unfinished"] as const) {
    // Out of the count at once: its 'close' comes later, after more connections are accepted in this turn.
    for (const [socket] of quiet[kind].sort((a, b) => a[1] - b[1]).slice(0, left)) {
      open.delete(socket);
      socket.destroy();
    }
    closed[kind] = Math.min(left, quiet[kind].length);
    left -= closed[kind];
  }
  closed.refused = closed.idle + closed.stalled + closed.unfinished === 0;
  return closed;
}

/** A warning at most every {@link WARN_EVERY_MS} while the cap is reached, counting what it did (nginx: "worker_connections are not enough"). */
function pressureLog(max: number, logger: Logger, clock: Clock): (closed: Closed) => void {
  let counts = { closedIdle: 0, closedStalledReaders: 0, closedUnfinishedHeads: 0, refused: 0 };
  let lastAt = -Infinity;
  return (closed) => {
    counts.closedIdle += closed.idle;
    counts.closedStalledReaders += closed.stalled;
    counts.closedUnfinishedHeads += closed.unfinished;
    if (closed.refused) counts.refused++;
    if (clock.now() - lastAt < WARN_EVERY_MS) return;
    lastAt = clock.now();
    logger.warn("client connections at server.maxConnections: closing quiet ones, refusing new ones when none is", {
      maxConnections: max,
      ...counts,
    });
    counts = { closedIdle: 0, closedStalledReaders: 0, closedUnfinishedHeads: 0, refused: 0 };
  };
}
