import {
  createServer,
  type IncomingHttpHeaders,
  type RequestListener,
  type Server,
  type ServerResponse,
} from "node:http";
import { connect, type AddressInfo } from "node:net";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig, type ConfigInput } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

/**
 * What an attack test on Node needs: an origin that reflects what it was sent and answers as
 * the query tells it, herdless in front of it on a ManualClock, and a client that writes
 * requests byte for byte (Node's own client would not send a body on GET, two
 * Content-Lengths or an absolute-form target).
 */

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface ReflectingOrigin {
  url: string;
  seen: SeenRequest[];
  close(): Promise<void>;
}

/**
 * The careless origin an attacker looks for: its page names the URL, method, body and the
 * override headers it was sent. The query steers it: `cc=` (Cache-Control, default
 * `max-age=60`), `vary=`, `sc=` (Surrogate-Control), `status=206`, `fail=1` (every request after the first for that URL
 * answers 500), `etag=` (sent, and a matching If-None-Match gets a 304 carrying the
 * `on304=` JSON headers). An `X-Api-Version` other than 1 gets a 404 without freshness.
 */
export async function reflectingOrigin(): Promise<ReflectingOrigin> {
  const seen: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      const url = req.url ?? "";
      seen.push({ method: req.method ?? "", url, headers: req.headers, body });
      const q = new URL(`http://origin.test${url.startsWith("/") ? url : "/"}`).searchParams;
      const headers: Record<string, string> = {
        "content-type": "text/plain",
        "cache-control": q.get("cc") ?? "max-age=60",
      };
      if (q.get("vary")) headers.vary = q.get("vary")!;
      if (q.get("sc")) headers["surrogate-control"] = q.get("sc")!;
      const etag = q.get("etag");
      if (etag) headers.etag = `"${etag}"`;
      if (q.get("fail") && seen.filter((s) => s.url === url).length > 1) {
        res.writeHead(500, { "content-type": "text/plain" }).end("origin error");
        return;
      }
      // A framework that rejects an API version it does not know, from a header the key ignores.
      const version = req.headers["x-api-version"];
      if (version !== undefined && version !== "1") {
        res.writeHead(404, { "content-type": "text/plain" }).end(`unknown API version ${String(version)}`);
        return;
      }
      if (etag && req.headers["if-none-match"] === `"${etag}"`) {
        res.writeHead(304, { ...headers, ...(JSON.parse(q.get("on304") ?? "{}") as Record<string, string>) }).end();
        return;
      }
      if (q.get("status") === "206") {
        res.writeHead(206, { ...headers, "content-range": "bytes 0-1/10" }).end("pa");
        return;
      }
      const h = req.headers;
      res.writeHead(200, headers);
      res.end(
        `#${seen.length} ${req.method} ${url} body=${body} xfh=${h["x-forwarded-host"] ?? "-"} ` +
          `xfp=${h["x-forwarded-proto"] ?? "-"} xfssl=${h["x-forwarded-ssl"] ?? "-"} ` +
          `auth=${h.authorization ?? "-"} lang=${h["x-lang"] ?? "-"}`,
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export interface Herdless {
  base: string;
  clock: ManualClock;
  close(): Promise<void>;
}

/** herdless's Node server (its socket hit path on) in front of `originUrl`. */
export async function herdless(
  originUrl: string,
  extra: Omit<Partial<ConfigInput>, "origin"> & { origin?: Partial<ConfigInput["origin"]> } = {},
): Promise<Herdless> {
  const clock = new ManualClock(Date.now());
  const logger = jsonLogger("silent");
  const config = parseConfig({ ...extra, origin: { ...extra.origin, url: originUrl } });
  const running = await startServer({ stack: localStack({ config, logger, clock }), logger, port: 0, fastHits: true });
  return { base: running.url, clock, close: () => running.close() };
}

export interface RawAnswer {
  status: number;
  /** Header names lowercased; a repeated field's values joined with ", ". */
  headers: Record<string, string>;
  /** The body, de-chunked. */
  body: string;
  /** The whole answer as received. */
  text: string;
}

/** Writes `head` (and whatever follows it) to a new connection and reads the first answer until the server closes. */
export function raw(base: string, bytes: string): Promise<RawAnswer> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    socket.on("end", () => resolve(parseAnswer(text)));
    socket.on("error", reject);
  });
}

/** A request under Host `shop.test` with `Connection: close`; `target` is written as given. */
export function get(
  base: string,
  target: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<RawAnswer> {
  let head = `${init.method ?? "GET"} ${target} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries({ host: "shop.test", connection: "close", ...init.headers }))
    head += `${name}: ${value}\r\n`;
  return raw(base, `${head}\r\n${init.body ?? ""}`);
}

function parseAnswer(text: string): RawAnswer {
  const split = text.indexOf("\r\n\r\n");
  const [statusLine = "", ...lines] = text.slice(0, split === -1 ? text.length : split).split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let body = split === -1 ? "" : text.slice(split + 4);
  if (headers["transfer-encoding"] === "chunked") body = dechunk(body);
  return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0), headers, body, text };
}

function dechunk(chunked: string): string {
  let out = "";
  let rest = chunked;
  for (;;) {
    const eol = rest.indexOf("\r\n");
    const size = parseInt(rest.slice(0, eol), 16);
    if (!(size > 0)) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 4 + size);
  }
}

/**
 * `handler` serving on 127.0.0.1 as a test's origin; its base URL. Its closing goes on
 * `cleanup`, which the test file runs after each test.
 */
export async function servingOrigin(handler: RequestListener, cleanup: (() => Promise<void>)[]): Promise<string> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Writes `chunk` again and again to `res` until `bytes` are sent, as fast as the client takes them, then ends it. */
export function sendAsTaken(res: ServerResponse, bytes: number, chunk: Buffer): void {
  let sent = 0;
  const pump = () => {
    while (sent < bytes) {
      sent += chunk.length;
      if (!res.write(chunk)) return void res.once("drain", pump);
    }
    res.end();
  };
  pump();
}

/**
 * An origin whose every answer is a server-sent event stream left open, as a page's is: its
 * first event is `data: <n>` (n: the streams opened before it). `open` holds them; `cleanup`
 * ends them before the origin closes.
 */
export async function eventStreamOrigin(
  cleanup: (() => Promise<void>)[],
): Promise<{ url: string; open: ServerResponse[] }> {
  const open: ServerResponse[] = [];
  const url = await servingOrigin((_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.write(`data: ${open.length}\n\n`);
    open.push(res);
  }, cleanup);
  cleanup.unshift(async () => void open.forEach((res) => res.end()));
  return { url, open };
}

/**
 * Asks for `target` as EventSource does; what arrived once it holds `until` (or a head other
 * than 200), or, given `ms`, all that arrived by then.
 */
export function readUntil(base: string, target: string, until: string, ms?: number): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () =>
      socket.write(`GET ${target} HTTP/1.1\r\nhost: shop.test\r\naccept: text/event-stream\r\n\r\n`),
    );
    let text = "";
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(text);
    };
    const timer = ms === undefined ? undefined : setTimeout(done, ms);
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      const refused = text.includes("\r\n\r\n") && !text.startsWith("HTTP/1.1 200 ");
      if (text.includes(until) || refused) done();
    });
    socket.on("error", reject);
    socket.on("close", done);
  });
}
