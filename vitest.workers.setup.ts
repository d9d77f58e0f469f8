/**
 * Global setup of the workers test project: a counting, controllable origin on 127.0.0.1.
 *
 * It runs in Node, outside workerd, so what it counts is what really crossed the network
 * from the Worker. Tests drive it over HTTP through test/cloudflare/test-origin.ts:
 *
 *   /o/<ns>/<path>          origin traffic of namespace <ns> (ORIGIN_URL = <base>/o/<ns>)
 *   /__origin/<ns>/<verb>   control: set, stats, wait, release, reset
 *
 * Namespaces keep test files (which run in parallel, each in its own workerd) apart.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { TestProject } from "vitest/node";
import { WebSocketServer } from "ws";
import {
  STALE_ORIGIN_KEY,
  TEST_ORIGIN_KEY,
  TRAILER_ORIGIN_KEY,
  type OriginBehaviour,
  type OriginBehaviourPatch,
  type OriginRequestRecord,
  type OriginStats,
  type OriginWaitCondition,
  largeBodyByte,
} from "./test/cloudflare/origin-protocol.ts";

declare module "vitest" {
  export interface ProvidedContext {
    [TEST_ORIGIN_KEY]: string;
    [STALE_ORIGIN_KEY]: string;
    [TRAILER_ORIGIN_KEY]: string;
  }
}

const defaultBehaviour = (): OriginBehaviour => ({
  status: 200,
  headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "max-age=60" },
  delayMs: 0,
  mode: "up",
});

interface Namespace {
  behaviour: OriginBehaviour;
  paths: Map<string, Partial<OriginBehaviour>>;
  stats: OriginStats;
  held: Array<() => void>;
  /** Re-evaluated on every stats change to wake long-polls. */
  waiters: Set<() => void>;
}

const namespaces = new Map<string, Namespace>();

function namespace(name: string): Namespace {
  let ns = namespaces.get(name);
  if (!ns) {
    ns = {
      behaviour: defaultBehaviour(),
      paths: new Map(),
      stats: { count: 0, inFlight: 0, maxInFlight: 0, aborted: 0, held: 0, requests: [] },
      held: [],
      waiters: new Set(),
    };
    namespaces.set(name, ns);
  }
  return ns;
}

function changed(ns: Namespace): void {
  for (const wake of [...ns.waiters]) wake();
}

function releaseHeld(ns: Namespace, n: number): number {
  const released = ns.held.splice(0, n);
  ns.stats.held = ns.held.length;
  for (const resume of released) resume();
  changed(ns);
  return released.length;
}

async function serveOrigin(ns: Namespace, path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { stats } = ns;
  stats.count++;
  const n = stats.count;
  stats.inFlight++;
  stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers))
    headers[name] = Array.isArray(value) ? value.join(", ") : (value ?? "");
  const record: OriginRequestRecord = { method: req.method ?? "GET", path, headers };
  stats.requests.push(record);
  changed(ns);

  let done = false;
  let resume: (() => void) | undefined;
  const finish = (aborted: boolean) => {
    if (done) return;
    done = true;
    stats.inFlight--;
    if (aborted) stats.aborted++;
    // A client that gave up while parked is no longer held.
    const parked = resume === undefined ? -1 : ns.held.indexOf(resume);
    if (parked >= 0) ns.held.splice(parked, 1);
    stats.held = ns.held.length;
    changed(ns);
  };
  res.on("close", () => finish(!res.writableFinished));

  const pathname = path.split("?")[0] ?? path;
  const routed: OriginBehaviour = { ...ns.behaviour, ...ns.paths.get(pathname) };
  const carried = Object.entries(routed.byHeader ?? {}).find(([spec]) => carries(req.headers, spec));
  const b: OriginBehaviour = { ...routed, ...carried?.[1] };
  if (b.readBody)
    await new Promise<void>((resolve) => {
      req.on("end", resolve).on("close", resolve).resume();
    });
  if (b.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, b.delayMs));
  if (b.mode === "sink") return sink(req, res, record, () => changed(ns));
  if (b.mode === "hold") {
    await new Promise<void>((resolve) => {
      resume = resolve;
      ns.held.push(resolve);
      stats.held = ns.held.length;
      changed(ns);
    });
  }
  if (done) return;
  if (b.mode === "down") {
    req.socket.destroy();
    return;
  }
  const body =
    b.bodyBytes !== undefined
      ? generatedBody(b.bodyBytes)
      : b.bodyBase64 !== undefined
        ? Buffer.from(b.bodyBase64, "base64")
        : Buffer.from(b.body ?? `${path} #${n}`);
  if (b.earlyHints) res.writeEarlyHints({ link: "</style.css>; rel=preload; as=style" });
  const out: Record<string, string> = { ...b.headers };
  if (b.etag !== undefined) out["etag"] = b.etag;
  if (b.reflectOrigin && req.headers.origin !== undefined)
    Object.assign(out, {
      "access-control-allow-origin": req.headers.origin,
      "access-control-allow-credentials": "true",
    });
  if (b.refuseNonAscii && req.rawHeaders.some((field) => /[^\t -~]/.test(field))) {
    res.writeHead(400, out).end("Bad Request: invalid non-ASCII or control character in header");
    return;
  }
  if (b.etag !== undefined && req.headers["if-none-match"] === b.etag) {
    res.writeHead(304, { ...out, ...b.notModifiedHeaders }).end();
    return;
  }
  if (b.rawHeaderLines !== undefined) {
    const lines = Object.entries(out).map(([name, value]) => `${name}: ${value}\r\n`);
    const head = `HTTP/1.1 ${b.status} X\r\n${lines.join("")}${b.rawHeaderLines}content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
    req.socket.end(Buffer.concat([Buffer.from(head, "latin1"), req.method === "HEAD" ? Buffer.alloc(0) : body]));
    return;
  }
  if (b.mode === "truncate") {
    res.writeHead(b.status, { ...out, "content-length": String(body.length * 2 + 16) });
    res.write(body, () => req.socket.destroy());
    return;
  }
  if ((b.mode === "half" || b.mode === "stream" || b.mode === "cut") && req.method !== "HEAD") {
    const half = Math.floor(body.length / 2);
    res.writeHead(b.status, b.mode === "stream" ? out : { ...out, "content-length": String(body.length) });
    res.write(body.subarray(0, half));
    await new Promise<void>((resolve) => {
      resume = resolve;
      ns.held.push(resolve);
      stats.held = ns.held.length;
      changed(ns);
    });
    if (b.mode === "cut") req.socket.destroy();
    else if (!done) res.end(body.subarray(half));
    return;
  }
  res
    .writeHead(b.status, { ...out, "content-length": String(body.length) })
    .end(req.method === "HEAD" ? undefined : body);
}

/** Reads the request's body, noting in `record` what arrived; answers once it ended as framed. */
function sink(req: IncomingMessage, res: ServerResponse, record: OriginRequestRecord, changed: () => void): void {
  const received = { bytes: 0, complete: false };
  record.received = received;
  req.on("data", (chunk: Buffer) => {
    received.bytes += chunk.length;
    changed();
  });
  // "end" comes only for a whole message: the Content-Length's every byte, or the last chunk.
  req.on("end", () => {
    received.complete = true;
    changed();
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(received));
  });
}

const generated = new Map<number, Buffer>();
function generatedBody(bytes: number): Buffer {
  let body = generated.get(bytes);
  if (!body) {
    body = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) body[i] = largeBodyByte(i);
    generated.set(bytes, body);
  }
  return body;
}

function applyPatch(ns: Namespace, patch: OriginBehaviourPatch): void {
  const { paths, ...rest } = patch;
  ns.behaviour = { ...ns.behaviour, ...rest };
  for (const [path, override] of Object.entries(paths ?? {}))
    ns.paths.set(path, { ...ns.paths.get(path), ...override });
  // Leaving hold mode lets parked requests go, so a test cannot strand them.
  if (ns.behaviour.mode !== "hold") releaseHeld(ns, ns.held.length);
}

function reached(stats: OriginStats, c: OriginWaitCondition): boolean {
  return (c.count ?? 0) <= stats.count && (c.inFlight ?? 0) <= stats.inFlight && (c.held ?? 0) <= stats.held;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text === "" ? {} : JSON.parse(text);
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
}

async function control(
  ns: Namespace,
  verb: string,
  url: URL,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  switch (verb) {
    case "set":
      applyPatch(ns, (await readJson(req)) as OriginBehaviourPatch);
      return json(res, 200, ns.stats);
    case "stats":
      return json(res, 200, ns.stats);
    case "release":
      return json(res, 200, { released: releaseHeld(ns, Number(url.searchParams.get("n") ?? ns.held.length)) });
    case "reset":
      releaseHeld(ns, ns.held.length);
      ns.behaviour = defaultBehaviour();
      ns.paths.clear();
      ns.stats = { count: 0, inFlight: 0, maxInFlight: 0, aborted: 0, held: 0, requests: [] };
      return json(res, 200, ns.stats);
    case "wait": {
      const condition = (await readJson(req)) as OriginWaitCondition;
      const timeoutMs = Number(url.searchParams.get("timeoutMs") ?? 5_000);
      const ok = await new Promise<boolean>((resolve) => {
        const check = () => {
          if (!reached(ns.stats, condition)) return;
          cleanup();
          resolve(true);
        };
        const timer = setTimeout(() => {
          cleanup();
          resolve(false);
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          ns.waiters.delete(check);
        };
        ns.waiters.add(check);
        check();
      });
      return json(res, ok ? 200 : 408, ns.stats);
    }
    default:
      return json(res, 404, { error: `unknown control verb ${verb}` });
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const [, area, name, ...rest] = url.pathname.split("/");
    const handle = async () => {
      if (area === "o" && name) return serveOrigin(namespace(name), `/${rest.join("/")}${url.search}`, req, res);
      if (area === "__origin" && name && rest.length === 1)
        return control(namespace(name), rest[0] ?? "", url, req, res);
      json(res, 404, { error: "test origin paths are /o/<ns>/… and /__origin/<ns>/<verb>" });
    };
    handle().catch((error: unknown) => {
      if (!res.headersSent) json(res, 500, { error: String(error) });
      else res.destroy();
    });
  });
  server.on("upgrade", echoWebSocket);
  // workerd pools and reuses its connections: a socket Node closes when idle races with
  // workerd's next request on it, which then fails with "Network connection lost"
  // (workers-sdk#14848). So idle sockets stay open; teardown closes them all.
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  project.provide(TEST_ORIGIN_KEY, `http://127.0.0.1:${port}`);
  const stale = await staleOrigin();
  project.provide(STALE_ORIGIN_KEY, stale.url);
  const trailers = await trailerOrigin();
  project.provide(TRAILER_ORIGIN_KEY, trailers.url);
  return async () => {
    for (const ns of namespaces.values()) releaseHeld(ns, ns.held.length);
    server.closeAllConnections();
    for (const ws of echoes.clients) ws.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await stale.close();
    await trailers.close();
  };
}

const echoes = new WebSocketServer({ noServer: true, perMessageDeflate: true });

/**
 * WebSocket handshakes to `/o/<ns>/…` (permessage-deflate offered, as most servers do),
 * counted and recorded as requests of the namespace:
 * `…/forbidden` is refused with a 403, any other path is an echo (text as text, binary as
 * binary; the message `close please` is answered with a close, code 4001).
 */
function echoWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const url = new URL(req.url ?? "/", "http://127.0.0.1");
  const [, area, name, ...rest] = url.pathname.split("/");
  if (area !== "o" || !name) return void socket.destroy();
  const ns = namespace(name);
  const headers: Record<string, string> = {};
  for (const [field, value] of Object.entries(req.headers))
    headers[field] = Array.isArray(value) ? value.join(", ") : (value ?? "");
  ns.stats.count++;
  ns.stats.requests.push({ method: req.method ?? "GET", path: `/${rest.join("/")}${url.search}`, headers });
  changed(ns);
  if (rest.at(-1) === "forbidden")
    return void socket.end(
      "HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\nnot in",
    );
  echoes.handleUpgrade(req, socket, head, (ws) =>
    ws.on("message", (data, binary) => {
      if (String(data) === "close please") ws.close(4001, "asked");
      else ws.send(data, { binary });
    }),
  );
}

/**
 * An origin that closes a kept-alive connection as the next request is written on it (as a
 * Node origin with its default 5 s keepAliveTimeout races workerd's pool): each connection
 * answers its first request and resets every later one. Paths under `/down/` are reset on any
 * connection: an origin that is failing.
 */
function staleOrigin(): Promise<RawOrigin> {
  return rawOrigin((path, nth) => (nth > 1 || path.startsWith("/down/") ? undefined : plainAnswer(path)));
}

/**
 * An origin that keeps its connections and answers paths under `/trailer/` chunked with a
 * trailer section (RFC 9112 §7.1.2), as a server that sends a checksum or timing after the
 * content does, paths under `/malformed/` with a head no parser takes (a field name that
 * is not a token), and paths under `/length-and-chunked/` chunked with a `Content-Length: 0`
 * beside it. Any other path is answered as the stale origin's first request is.
 */
function trailerOrigin(): Promise<RawOrigin> {
  return rawOrigin((path) => {
    if (path.startsWith("/trailer/"))
      return `HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n${path.length.toString(16)}\r\n${path}\r\n0\r\nX-Checksum: abc\r\n\r\n`;
    if (path.startsWith("/malformed/"))
      return `HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: ${path.length}\r\n\r\n${path}`;
    // Both framings at once (RFC 9112 §6.1), a Content-Length that says nothing is coming.
    if (path.startsWith("/length-and-chunked/"))
      return `HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n${path.length.toString(16)}\r\n${path}\r\n0\r\n\r\n`;
    return plainAnswer(path);
  });
}

function plainAnswer(path: string): string {
  return `HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${path.length}\r\n\r\n${path}`;
}

interface RawOrigin {
  url: string;
  close: () => Promise<void>;
}

/**
 * An origin written on raw sockets, for answers Node's HTTP server would not send: `answer`
 * gives the bytes for a request (its path, and which request of its connection it is, from 1),
 * or undefined to reset the connection. `/__seen` answers the requests seen so far (`GET /b
 * (reset)` for a reset one, `GET /b (kept-alive)` for one answered on a connection that had
 * answered before), forgets them and closes.
 */
async function rawOrigin(answer: (path: string, nth: number) => string | undefined): Promise<RawOrigin> {
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let head = "";
    let requests = 0;
    socket.on("data", (data: Buffer) => {
      head += data.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) return;
      const [method = "", path = ""] = head.split(" ");
      head = head.slice(end + 4);
      requests++;
      if (path === "/__seen") {
        const body = JSON.stringify(seen.splice(0));
        // And closes: the test's own fetch leaves no connection in the pool herdless draws from.
        socket.end(
          `HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
        return;
      }
      const bytes = answer(path, requests);
      seen.push(`${method} ${path}${bytes === undefined ? " (reset)" : requests > 1 ? " (kept-alive)" : ""}`);
      if (bytes === undefined) socket.resetAndDestroy();
      else socket.write(bytes);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Whether a request carries `spec`: a header by its name, or with `name: value` that value exactly. */
function carries(headers: IncomingHttpHeaders, spec: string): boolean {
  const colon = spec.indexOf(": ");
  if (colon < 0) return headers[spec] !== undefined;
  return headers[spec.slice(0, colon)] === spec.slice(colon + 2);
}
