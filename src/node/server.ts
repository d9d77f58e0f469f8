import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import type { EngineRequest } from "../core/engine.ts";
import type { HeaderReader } from "../core/http.ts";
import type { EngineResponse } from "../core/respond.ts";
import type { Logger } from "./logger.ts";
import { prometheusText } from "./prometheus.ts";
import type { Stack } from "./stack.ts";

export interface ServerOptions {
  stack: Stack;
  logger: Logger;
  port?: number;
  host?: string;
}

export interface RunningServer {
  url: string;
  port: number;
  server: Server;
  /** Stops accepting, lets in-flight requests finish, then closes the stack. */
  close(): Promise<void>;
}

const ADMIN_PREFIX = "/__herdless/";

/**
 * The reverse proxy: Node's http server in front of the engine. Responses from the cache
 * are written straight to the socket from the stored status, headers and bytes.
 *
 * @example
 * const running = await startServer({ stack: localStack({ config, logger }), logger, port: 8787 });
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { stack, logger } = options;
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
    handle(stack, req, res).catch((error: unknown) => {
      logger.error("request failed", { url: req.url, error: String(error) });
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end("herdless internal error\n");
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 8787, options.host ?? "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${options.host ?? "127.0.0.1"}:${port}`;
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    server,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        await closed;
        await stack.close();
      })()),
  };
}

async function handle(stack: Stack, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = req.url ?? "/";
  if (path.startsWith(ADMIN_PREFIX)) return admin(stack, path, res);
  const request = toEngineRequest(req);
  const response = await stack.engine.handle(request);
  await write(res, response);
}

async function admin(stack: Stack, path: string, res: ServerResponse): Promise<void> {
  if (path === `${ADMIN_PREFIX}metrics`) {
    const body = prometheusText(stack, await stack.guard.snapshot());
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4", "cache-control": "no-store" });
    res.end(body);
    return;
  }
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("unknown herdless admin path\n");
}

function toEngineRequest(req: IncomingMessage): EngineRequest {
  const headers = req.headers;
  const reader: HeaderReader = {
    get(name: string): string | null {
      const value = headers[name];
      if (value === undefined) return null;
      return Array.isArray(value) ? value.join(", ") : value;
    },
  };
  const rawHeaders: [string, string][] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) rawHeaders.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!]);
  const method = req.method ?? "GET";
  const body = method === "GET" || method === "HEAD" ? null : (Readable.toWeb(req) as ReadableStream<Uint8Array>);
  return { method, url: new URL(req.url ?? "/", `http://${headers.host ?? "localhost"}`), headers: reader, rawHeaders, body };
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
  await new Promise<void>((resolve) => {
    const stream = Readable.fromWeb(body as import("node:stream/web").ReadableStream<Uint8Array>);
    stream.on("error", () => {
      res.destroy();
      resolve();
    });
    res.on("close", resolve);
    stream.pipe(res);
  });
}
