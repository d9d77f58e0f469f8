import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";

/**
 * The origin of the randomized check of herdless's promises (promises.test.ts): it counts
 * the requests it works on at once (all of them: fills, relays, uploads, HEAD, OPTIONS,
 * revalidations, WebSocket handshakes) and logs each one with its key, and it answers as the
 * path's first segment says, the same way for a given path and per-path request number, so a
 * seed's run is the same traffic whatever order requests arrive in:
 *
 * - `/fresh/n` `max-age=2` with an ETag (`304` to a matching `If-None-Match`);
 * - `/swr/n` `max-age=1, stale-while-revalidate=30, stale-if-error=60`, every answer after
 *   the first slow ({@link SLOW_REFRESH_MS});
 * - `/sie/n` `max-age=1, stale-if-error=60`: the first answer good, then a sick one
 *   (`503`, `500`, a hang, a cut body, a reset or a slow one) or a good one;
 * - `/priv/n` `private` with a Set-Cookie, `/nostore/n` `no-store`: both name their requester;
 * - `/err/n` `500` without freshness; `/slow/n` cacheable after up to 700 ms; `/hang/n` never;
 * - `/cut/n` a body cut short; `/vary/n` `Vary: Accept-Language`; `/redir/n` a cacheable `302`;
 * - `/big/n` a cacheable body of 0.3 to 3 MiB, streamed in pieces;
 * - `/standin/n` `max-age=0, stale-if-error=60`: stale as it is stored, a copy to stand in
 *   for the origin's outage (the run's own probe of it, never the seeded traffic);
 * - unsafe methods (`POST`, `PUT`, `DELETE`) the method and how many bytes were sent.
 *
 * A request carrying `Cookie` or `Authorization` is answered with `Set-Cookie: sid=<id>` and
 * its body names `for <id>` (the `X-Client-Id` the client sent), so a client can tell whose
 * answer it got. Every answer carries `X-Origin: 1`: a 500 without it is herdless's own.
 */
export const SLOW_REFRESH_MS = 1_200;

export interface OriginCall {
  path: string;
  method: string;
  /** A request the cache may share (GET or HEAD without Cookie or Authorization). */
  shared: boolean;
  conditional: boolean;
  /** The Accept-Language asked with (a `/vary/n` answer is one variant per language). */
  variant?: string;
  start: number;
  end?: number;
  /** The answer was written whole (not cut, reset or abandoned). */
  complete?: boolean;
  status?: number;
}

export interface PromisesOrigin {
  url: string;
  calls: OriginCall[];
  /** Most requests in progress at once, and when that happened. */
  peak(): number;
  /** The requests in progress when the peak was reached. */
  atPeak(): OriginCall[];
  /** While down every request is answered `503` at once (`reset`: its connection reset). */
  setDown(mode: "up" | "503" | "reset"): void;
  close(): Promise<void>;
}

/** A number from 0 to 1 for `text`: the same text, the same number. */
export function hashUnit(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return ((h >>> 0) % 1_000_003) / 1_000_003;
}

export async function startPromisesOrigin(seed: number): Promise<PromisesOrigin> {
  const calls: OriginCall[] = [];
  const perPath = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let inFlight = 0;
  let peak = 0;
  const open = new Set<OriginCall>();
  let atPeak: OriginCall[] = [];
  let down: "up" | "503" | "reset" = "up";
  const later = (ms: number, then: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      then();
    }, ms);
    timers.add(timer);
  };
  const begin = (call: OriginCall) => {
    calls.push(call);
    open.add(call);
    if (++inFlight > peak) {
      peak = inFlight;
      atPeak = [...open];
    }
    let ended = false;
    return (complete: boolean, status?: number) => {
      if (ended) return;
      ended = true;
      inFlight--;
      open.delete(call);
      call.end = performance.now();
      call.complete = complete;
      if (status !== undefined) call.status = status;
    };
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://o.test").pathname;
    const method = req.method ?? "GET";
    const personal = req.headers.cookie !== undefined || req.headers.authorization !== undefined;
    const count = (perPath.get(path) ?? 0) + 1;
    perPath.set(path, count);
    const conditional = req.headers["if-none-match"] !== undefined || req.headers["if-modified-since"] !== undefined;
    const end = begin({
      path,
      method,
      shared: (method === "GET" || method === "HEAD") && !personal,
      conditional,
      ...(req.headers["accept-language"] !== undefined ? { variant: req.headers["accept-language"] } : {}),
      start: performance.now(),
    });
    res.on("finish", () => end(true, res.statusCode));
    res.on("close", () => end(res.writableFinished, res.statusCode));
    // herdless gave up on it (its close is read here before node:http's close event a phase later).
    const gone = () => end(res.writableFinished, res.statusCode);
    req.socket.once("end", gone).once("error", gone);
    res.on("close", () => req.socket.off("end", gone).off("error", gone));
    let uploaded = 0;
    req.on("data", (chunk: Buffer) => (uploaded += chunk.length));
    req.on("error", () => undefined);
    req.on("end", () => {
      if (down === "reset") return void req.socket.resetAndDestroy();
      if (down === "503") return void text(res, 503, "down", {});
      const ask: Ask = {
        path,
        method,
        count,
        uploaded,
        personal,
        req,
        res,
        later,
        rand: hashUnit(`${seed} ${path} ${count}`),
      };
      answer(ask);
    });
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex) => {
    const end = begin({
      path: req.url ?? "/",
      method: "UPGRADE",
      shared: false,
      conditional: false,
      start: performance.now(),
    });
    socket.on("error", () => undefined);
    later(50, () => {
      socket.write("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n");
      end(true, 101);
      socket.on("data", (chunk: Buffer) => socket.write(chunk));
      later(200, () => socket.destroy());
    });
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    peak: () => peak,
    atPeak: () => atPeak,
    setDown: (mode) => void (down = mode),
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

interface Ask {
  path: string;
  method: string;
  count: number;
  uploaded: number;
  personal: boolean;
  req: IncomingMessage;
  res: ServerResponse;
  later: (ms: number, then: () => void) => void;
  /** This request's own random number (seed, path, count). */
  rand: number;
}

function text(res: ServerResponse, status: number, body: string, headers: Record<string, string>): void {
  if (res.destroyed) return;
  res.writeHead(status, { "content-type": "text/plain", "x-origin": "1", ...headers });
  res.end(body);
}

/** The answer for a request: see {@link startPromisesOrigin}. */
function answer(ask: Ask): void {
  const { path, method, req, res, personal, count, rand } = ask;
  const id = String(req.headers["x-client-id"] ?? "-");
  const own: Record<string, string> = personal ? { "set-cookie": `sid=${id}; Path=/` } : {};
  const tag = personal ? ` for ${id}` : "";
  if (method === "POST" || method === "PUT" || method === "DELETE")
    return text(res, 200, `${method} ${path} got ${ask.uploaded}${tag}`, own);
  if (method === "OPTIONS") return text(res, 204, "", { allow: "GET, HEAD, POST, PUT, DELETE, OPTIONS", ...own });
  const kind = path.split("/")[1] ?? "";
  const page = `${path} #${count}${tag} `.padEnd(200, ".");
  switch (kind) {
    case "fresh": {
      const etag = `"${path}-v1"`;
      if (req.headers["if-none-match"] === etag)
        return void res.writeHead(304, { etag, "cache-control": "max-age=2", "x-origin": "1" }).end();
      return text(res, 200, page, { etag, "cache-control": "max-age=2", ...own });
    }
    case "swr": {
      const cc = "max-age=1, stale-while-revalidate=30, stale-if-error=60";
      return ask.later(count === 1 ? 0 : SLOW_REFRESH_MS, () => text(res, 200, page, { "cache-control": cc, ...own }));
    }
    case "sie":
      return sick(ask, page, own);
    case "priv":
      return text(res, 200, `private${tag || ` for ${id}`} ${page}`, {
        "cache-control": "private, max-age=60",
        "set-cookie": `sid=${id}`,
      });
    case "nostore":
      return text(res, 200, `nostore for ${id} ${page}`, { "cache-control": "no-store" });
    case "err":
      return text(res, 500, `error ${page}`, own);
    case "slow":
      return ask.later(Math.floor(rand * 700), () => text(res, 200, page, { "cache-control": "max-age=2", ...own }));
    case "hang":
      return;
    case "cut":
      res.writeHead(200, { "content-length": "10000", "cache-control": "max-age=2", "x-origin": "1" });
      res.write("x".repeat(3000));
      return ask.later(20, () => res.destroy());
    case "vary":
      return text(res, 200, `lang=${String(req.headers["accept-language"] ?? "-")} ${page}`, {
        vary: "accept-language",
        "cache-control": "max-age=2",
        ...own,
      });
    case "redir":
      return text(res, 302, "", {
        location: `/fresh/${path.split("/")[2] ?? "0"}`,
        "cache-control": "max-age=2",
        ...own,
      });
    case "big":
      return streamBig(ask, own);
    case "standin":
      return text(res, 200, page, { "cache-control": "max-age=0, stale-if-error=60", ...own });
    default:
      return text(res, 404, "no such page", own);
  }
}

/** `/sie/n`: good at first, then by its number a sick answer of one kind or another, or a good one. */
function sick(ask: Ask, page: string, own: Record<string, string>): void {
  const { res, rand } = ask;
  const cc = { "cache-control": "max-age=1, stale-if-error=60", ...own };
  if (ask.count === 1 || rand < 0.2) return text(res, 200, page, cc);
  if (rand < 0.35) return text(res, 503, "unavailable", {});
  if (rand < 0.5) return text(res, 500, "bug", {});
  if (rand < 0.6) return; // hangs
  if (rand < 0.7) return void ask.req.socket.resetAndDestroy();
  if (rand < 0.85) {
    res.writeHead(200, { ...cc, "content-length": "400", "x-origin": "1" });
    res.write(page.slice(0, 50));
    return ask.later(10, () => res.destroy());
  }
  ask.later(2_000, () => text(res, 200, page, cc));
}

/** `/big/n`: 0.3 to 3 MiB, cacheable, written in 64 KiB pieces as the client takes them. */
function streamBig(ask: Ask, own: Record<string, string>): void {
  const { res } = ask;
  const size = Math.floor((0.3 + hashUnit(ask.path) * 2.7) * 1024 * 1024);
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-length": String(size),
    "cache-control": "max-age=2",
    "x-origin": "1",
    ...own,
  });
  const piece = Buffer.alloc(64 * 1024, 0x61);
  let sent = 0;
  const pump = () => {
    while (sent < size && !res.destroyed) {
      const part = piece.subarray(0, Math.min(piece.length, size - sent));
      sent += part.length;
      if (sent >= size) return void res.end(part);
      if (!res.write(part)) return void res.once("drain", () => ask.later(2, pump));
    }
  };
  pump();
}
