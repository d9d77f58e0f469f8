import type { IncomingMessage, ServerResponse } from "node:http";
import {
  ADMIN_PREFIX,
  AttemptLimiter,
  handleAdmin,
  PROMETHEUS_CONTENT_TYPE,
  statsSnapshot,
  type AdminResponse,
} from "../core/admin/admin.ts";
import { methodNotAllowed } from "../core/admin/admin-methods.ts";
import { ADMIN_NAME, adminPath, isAdminPath } from "../core/admin/admin-path.ts";
import { parseConfig, type ConfigInput } from "../core/config.ts";
import { HerdlessError } from "../core/errors.ts";
import { formatCacheStatus } from "../core/http/cache-status.ts";
import {
  fieldCountRefusal,
  hostCountRefusal,
  missingHostRefusal,
  targetRefusal,
  transferCodingRefusal,
  versionRefusal,
  type Scheme,
} from "../core/http/request-check.ts";
import { optionsForServer } from "../core/http/failure-answer.ts";
import { prometheusText } from "../core/admin/prometheus.ts";
import type { EngineResponse } from "../core/http/respond.ts";
import { toEngineRequest } from "./engine-request.ts";
import { clientScheme, HitPath, requestUrl, trustsForwardedProto } from "./hit-path.ts";
import { emptyScan, headerReader, scanFields, type RequestScan } from "./request-fields.ts";
import { jsonLogger, type Logger, type LogLevel } from "./logger.ts";
import { localStack, type Stack } from "./stack.ts";
import { write } from "./write-answer.ts";
import { accessLog, type AccessRecord } from "./access-log.ts";
import { cacheStatusOf } from "../core/admin/access-line.ts";
import { fillBudgetBytes, fillBudgetView } from "../core/store/fill-budget.ts";
import { keepTickShapes } from "./tick-shapes.ts";

export interface HandlerOptions {
  /** The herdless config (validated here) for a one-process stack; or pass `stack` instead. */
  config?: ConfigInput;
  /** A stack built by the caller: `localStack(…)`, or `await redisStack(…)` for a fleet member. */
  stack?: Stack;
  /** Defaults to JSON lines on stderr at `log.level` of the config. */
  logger?: Logger;
  /** Answer fresh hits on the synchronous hit path (default true); false sends every request through the engine. */
  fastHits?: boolean;
  /** Where the access log's lines go when `log.access` is on; stdout by default. */
  accessLog?: (line: string) => void;
}

/** A node:http request listener that answers through herdless; `close()` stops its stack (Redis connections). */
export interface HerdlessHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  readonly stack: Stack;
  close(): Promise<void>;
}

/**
 * herdless as a node:http request handler: your server decides which requests it gets, the
 * rest stay yours. It answers requests to `/__herdless/` with the admin API when you route
 * them to it. Frameworks that mount a handler under a prefix and strip it from `req.url`
 * (Express's `app.use("/blog", handler)`) keep the full path in `req.originalUrl`: that is
 * the URL herdless keys and forwards.
 *
 * @example
 * const blog = createHandler({ config: { origin: { url: "http://127.0.0.1:8080" } } });
 * createServer((req, res) => (req.url?.startsWith("/blog/") ? blog(req, res) : ownApp(req, res)));
 */
export function createHandler(options: HandlerOptions): HerdlessHandler {
  if ((options.config === undefined) === (options.stack === undefined))
    throw new HerdlessError("CONFIG_INVALID", "createHandler needs exactly one of `config` and `stack`");
  const config = options.stack?.config ?? parseConfig(options.config);
  const logger = options.logger ?? jsonLogger(config.log.level as LogLevel);
  const stack = options.stack ?? localStack({ config, logger });
  const hits = options.fastHits === false ? undefined : new HitPath(stack);
  // Every answer ends in a few process.nextTick calls: kept at their cost for good (tick-shapes.ts).
  keepTickShapes();
  const access = config.log.access
    ? accessLog(options.accessLog ?? ((line) => void process.stdout.write(line)))
    : undefined;
  // Wrong admin tokens per client address, for this handler.
  const attempts = new AttemptLimiter();
  // Reused by every request: the handler reads it before it returns or awaits.
  const scan = emptyScan();
  const trusted = trustsForwardedProto(config);
  const fail = (req: IncomingMessage, res: ServerResponse) => (error: unknown) => {
    logger.error("request failed", { url: req.url, error: String(error) });
    if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
    res.end("herdless internal error\n");
  };
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    // The latency histograms count from here (a number: nothing allocated).
    const startedAt = stack.metrics.started();
    const record = access?.(req, res);
    const original = (req as { originalUrl?: unknown }).originalUrl;
    if (typeof original === "string") req.url = original;
    // One pass over the fields: the Host check below, and the hit path's.
    const fields = scanFields(req.rawHeaders, scan);
    // A request in an HTTP version herdless does not speak gets a 505, and one it cannot key
    // or route (bad, repeated or missing Host, a transfer coding it does not relay, a
    // request-target that is not a path or an http(s) URL) a clear 400, first.
    const refused = requestRefusal(req, fields);
    if (refused) {
      if (record) record.cacheStatus = cacheStatusOf(refused.headers);
      write(res, refused).catch(fail(req, res));
      return;
    }
    const admin = isAdminRequest(req);
    try {
      if (hits && !admin && hits.serve(req, res, startedAt, fields)) {
        if (record) record.cacheStatus = HIT;
        return;
      }
    } catch (error) {
      fail(req, res)(error);
      return;
    }
    const scheme = clientScheme(req, trusted, fields.proto);
    (admin ? serveAdmin(stack, req, res, attempts) : serve(stack, req, res, startedAt, record, scheme)).catch(
      fail(req, res),
    );
  };
  return Object.assign(handler, { stack, close: () => stack.close() });
}

/**
 * What herdless answers a request itself before anything else, if anything: a 505 for an HTTP
 * version it does not speak, a clear 400 for one it cannot key or route (bad or repeated
 * Host, a request-target that is not a path or an http(s) URL), `OPTIONS *` (`fields`: the
 * request's {@link scanFields}).
 */
export function requestRefusal(req: IncomingMessage, fields: RequestScan): EngineResponse | undefined {
  return (
    versionRefusal(req.httpVersionMajor) ??
    fieldCountRefusal(req.rawHeaders.length / 2) ??
    hostCountRefusal(fields.hosts, fields.host) ??
    missingHostRefusal(fields.hosts, req.httpVersionMinor) ??
    transferCodingRefusal(fields.transferEncoding) ??
    (req.method === "OPTIONS" && req.url === "*"
      ? optionsForServer()
      : targetRefusal(req.url ?? "/", fields.host ?? "localhost"))
  );
}

/**
 * Whether the admin API answers: decided on the path the engine would key (core
 * `isAdminPath`), so `/x/../__herdless/stats` or `http://site/__herdless/stats` reach the
 * admin API like the plain path, never the origin and the cache under the admin's key. The
 * URL is parsed only when the target names it or holds an escape (the parser never adds `__herdless`).
 */
function isAdminRequest(req: IncomingMessage): boolean {
  const target = req.url ?? "/";
  // An escape may spell it (`/%5F_herdless/`: the key's spelling decodes it, canonical-url.ts).
  if (!target.includes(ADMIN_NAME) && !target.includes("%")) return false;
  return isAdminPath(requestUrl(req).pathname);
}

async function serve(
  stack: Stack,
  req: IncomingMessage,
  res: ServerResponse,
  startedAt: number,
  record: AccessRecord | undefined,
  scheme: Scheme,
): Promise<void> {
  const response = await stack.engine.handle(toEngineRequest(req, res, startedAt, scheme));
  if (record) record.cacheStatus = cacheStatusOf(response.headers);
  // Refused because origin.maxWaiting requests wait already: its connection closes too, or
  // each refused client kept an idle one (~3 KB of heap) and 15,000 of them filled the heap.
  if (response.status === 503 && response.cacheStatus.detail === "waiting-full") res.shouldKeepAlive = false;
  await write(res, response);
}

async function serveAdmin(
  stack: Stack,
  req: IncomingMessage,
  res: ServerResponse,
  attempts: AttemptLimiter,
): Promise<void> {
  const path = adminPath(requestUrl(req).pathname);
  // Prometheus scrapes without a token: counters only, no keys or URLs.
  if (path === `${ADMIN_PREFIX}metrics`) {
    // A scrape reads; any other method is refused rather than answered with the counters.
    if (req.method !== "GET" && req.method !== "HEAD")
      return writeAdmin(res, methodNotAllowed(req.method ?? "", path, ["GET", "HEAD"]));
    const body = prometheusText({
      scope: "process",
      counters: stack.metrics,
      latency: stack.metrics.latency,
      guard: await stack.guard.snapshot(),
      inFlightHelp: "Origin requests in flight: this process alone, or the whole fleet when it shares Redis.",
      cache: { bytes: stack.near.bytes, entries: stack.near.size, evictions: stack.near.evictions },
      filling: { ...fillBudgetView(), budgetBytes: fillBudgetBytes(stack.config) },
      mode: { modes: MODES, current: stack.mode() },
    });
    res.writeHead(200, { "content-type": PROMETHEUS_CONTENT_TYPE, "cache-control": "no-store" });
    res.end(body);
    return;
  }
  const answer = await handleAdmin(
    {
      method: req.method ?? "GET",
      path,
      headers: headerReader(req.headers, req.rawHeaders),
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
        statsSnapshot(stack.metrics.view(), await stack.guard.snapshot(), {
          runtime: "node",
          scope: { of: "process" },
          mode: stack.mode(),
          startedAt: stack.startedAt,
          now: stack.clock.now(),
          cache: { entries: stack.near.size, bytes: stack.near.bytes, evictions: stack.near.evictions },
        }),
    },
  );
  writeAdmin(res, answer);
}

/** An admin answer as it is; Node leaves out the body of an answer to HEAD. */
function writeAdmin(res: ServerResponse, answer: AdminResponse): void {
  const flat: string[] = [];
  for (const [name, value] of answer.headers) flat.push(name, value);
  res.writeHead(answer.status, flat);
  res.end(answer.body);
}

/**
 * TLS here, or at the proxy in front (`X-Forwarded-Proto: https`), whether or not that proxy is
 * trusted for keys: the header's one use here, the cookie's `Secure` flag, is safe with a
 * forged value, which only keeps the sender's own browser from storing the cookie over http.
 */
function servedOverHttps(req: IncomingMessage): boolean {
  const forwarded = req.headers["x-forwarded-proto"];
  return clientScheme(req, true, Array.isArray(forwarded) ? forwarded[0] : forwarded) === "https:";
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

const MODES = ["local", "redis", "degraded"] as const;

/** A fresh hit's Cache-Status in the access log (its `ttl` left out). */
const HIT = formatCacheStatus({ hit: true });
