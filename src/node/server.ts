import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import type { EngineRequest } from "../core/engine.ts";
import type { EngineResponse } from "../core/http/respond.ts";
import { headerReader, HitPath, requestUrl } from "./hit-path.ts";
import { ADMIN_PREFIX, AttemptLimiter, handleAdmin, statsSnapshot } from "../core/admin/admin.ts";
import type { Logger } from "./logger.ts";
import { prometheusText } from "./prometheus.ts";
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
  /**
   * Stops accepting connections, lets in-flight requests finish (up to `drainTimeoutMs`),
   * closes keep-alive connections as they fall idle, then closes the stack. Idempotent.
   */
  close(): Promise<void>;
}

const IDLE_SWEEP_MS = 25;

/**
 * The reverse proxy: Node's http server in front of the engine. Fresh hits are written
 * synchronously from the process LRU ({@link HitPath}); everything else goes through the
 * engine, and its answers are written from the stored status, headers and bytes, or piped
 * with back-pressure when streamed.
 *
 * @example
 * const running = await startServer({ stack: localStack({ config, logger }), logger, port: 8787 });
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { stack, logger } = options;
  const hits = options.fastHits === false ? undefined : new HitPath(stack);
  let closing: Promise<void> | undefined;
  const fail = (req: IncomingMessage, res: ServerResponse) => (error: unknown) => {
    logger.error("request failed", { url: req.url, error: String(error) });
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
    res.end("herdless internal error\n");
  };
  // Wrong admin tokens per client address, for this process.
  const attempts = new AttemptLimiter();
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    // Once closing, every answer ends its connection, so keep-alive clients go elsewhere.
    if (closing) res.shouldKeepAlive = false;
    const admin = req.url?.startsWith(ADMIN_PREFIX) === true;
    try {
      if (hits && !admin && hits.serve(req, res)) return;
    } catch (error) {
      fail(req, res)(error);
      return;
    }
    handle(stack, req, res, admin ? attempts : undefined).catch(fail(req, res));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8787, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${options.host ?? "127.0.0.1"}:${port}`;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  return {
    url,
    port,
    server,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
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

async function handle(
  stack: Stack,
  req: IncomingMessage,
  res: ServerResponse,
  admin: AttemptLimiter | undefined,
): Promise<void> {
  if (admin) return serveAdmin(stack, req, res, admin);
  const response = await stack.engine.handle(toEngineRequest(req));
  await write(res, response);
}

async function serveAdmin(
  stack: Stack,
  req: IncomingMessage,
  res: ServerResponse,
  attempts: AttemptLimiter,
): Promise<void> {
  const path = (req.url ?? "/").split("?")[0] ?? "/";
  // Prometheus scrapes without a token: counters only, no keys or URLs.
  if (path === `${ADMIN_PREFIX}metrics`) {
    const body = prometheusText(stack, await stack.guard.snapshot());
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4", "cache-control": "no-store" });
    res.end(body);
    return;
  }
  const answer = await handleAdmin(
    {
      method: req.method ?? "GET",
      path,
      headers: headerReader(req.headers),
      text: (limit) => readText(req, limit),
      https: servedOverHttps(req),
      client: req.socket.remoteAddress ?? "unknown",
    },
    {
      token: stack.config.admin.token,
      now: () => stack.clock.now(),
      attempts,
      tokenHint: "start herdless with --admin-token, HERDLESS_ADMIN_TOKEN or admin.token in the config file",
      purges: stack.purges,
      stats: async () =>
        statsSnapshot(stack.metrics, await stack.guard.snapshot(), {
          runtime: "node",
          mode: stack.mode(),
          startedAt: stack.startedAt,
          now: stack.clock.now(),
          cache: { entries: stack.near.size, bytes: stack.near.bytes, evictions: stack.near.evictions },
        }),
    },
  );
  const flat: string[] = [];
  for (const [name, value] of answer.headers) flat.push(name, value);
  res.writeHead(answer.status, flat);
  res.end(answer.body);
}

/**
 * TLS here, or at the proxy in front (`X-Forwarded-Proto: https`). Trusting the header is
 * safe for its one use, the cookie's `Secure` flag: a forged one only keeps the sender's
 * own browser from storing the cookie over plain http.
 */
function servedOverHttps(req: IncomingMessage): boolean {
  if ((req.socket as { encrypted?: boolean }).encrypted === true) return true;
  const forwarded = req.headers["x-forwarded-proto"];
  const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(",")[0];
  return first?.trim().toLowerCase() === "https";
}

/** Reads a small request body, refusing more than `limit` bytes. */
async function readText(req: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw new Error(`request body is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function toEngineRequest(req: IncomingMessage): EngineRequest {
  const rawHeaders: [string, string][] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2)
    rawHeaders.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!]);
  const method = req.method ?? "GET";
  const body = method === "GET" || method === "HEAD" ? null : (Readable.toWeb(req) as ReadableStream<Uint8Array>);
  return { method, url: requestUrl(req), headers: headerReader(req.headers), rawHeaders, body };
}

/** Writes an engine answer: stored bytes in one `end`, streamed bodies piped with back-pressure. */
async function write(res: ServerResponse, response: EngineResponse): Promise<void> {
  const flat: string[] = [];
  for (const [name, value] of response.headers) flat.push(name, value);
  res.writeHead(response.status, flat);
  const body = response.body;
  if (body === null) {
    res.end();
    return;
  }
  if (body instanceof Uint8Array) {
    res.end(body);
    return;
  }
  // pipeline destroys the origin stream if the client goes away, and the socket if the origin fails mid-body.
  await pipeline(Readable.fromWeb(body as NodeReadableStream<Uint8Array>), res).catch(() => {
    res.destroy();
  });
}
