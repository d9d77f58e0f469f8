import type { GuardSnapshot } from "../guard/origin-guard.ts";
import { parsePurgeCommand, PurgeUnconfirmedError, type PurgeRegistry } from "./purge.ts";
import {
  hitRatioOf,
  originRequestsOf,
  requestsOf,
  zeroProtection,
  type CounterView,
  type ProtectionKind,
} from "./metrics.ts";
import type { ReporterView } from "./deployment-stats.ts";
import { dashboardHtml, loginHtml } from "./dashboard.ts";
import { AttemptLimiter, createSession, SESSION_TTL_MS, sessionValid, tokenMatches } from "./auth.ts";
import { ADMIN_PREFIX } from "./admin-path.ts";
import { html, json, NO_STORE, SECURITY_HEADERS, text, type AdminRequest, type AdminResponse } from "./responses.ts";
import { isJsonMediaType } from "./media-type.ts";
import { answerByMethod } from "./admin-methods.ts";

export { ADMIN_PREFIX, AttemptLimiter, tokenMatches };
export type { AdminRequest, AdminResponse };
/** The Prometheus text exposition format, version 0.0.4. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
const COOKIE = "herdless_admin";
const MAX_BODY_BYTES = 64 * 1024;

/** The numbers an operator watches: GET /__herdless/stats. */
export interface StatsSnapshot {
  runtime: "node" | "cloudflare";
  mode: string;
  startedAt: number;
  now: number;
  requests: number;
  hitRatio: number;
  /** Whose counters these are: see {@link StatsScope}. */
  scope: StatsScope;
  served: CounterView["served"];
  origin: CounterView["origin"];
  originRequests: number;
  /** Origin requests in the last complete second. */
  originPerSecond: number;
  breaker: GuardSnapshot["breaker"];
  /** Per-key backoff: answers while a key backed off, and keys that began backing off (metrics.ts). */
  protection: Record<ProtectionKind, number>;
  originInFlight: number;
  queueDepth: number;
  topKeys: { key: string; requests: number }[];
  series: CounterView["series"];
  cache?: { entries: number; bytes: number; evictions: number };
}

/**
 * Whose numbers the counters of a snapshot (requests, served, origin, series, top keys) are.
 * The breaker, origin requests in flight and queue come from the guard, whatever the scope.
 */
export type StatsScope =
  /** One Node process (a fleet member counts only its own requests). */
  | { of: "process" }
  /** One Worker isolate: the deployment's totals could not be read (`reason` says why). */
  | { of: "isolate"; reason: string }
  /**
   * The whole Worker deployment: every isolate's counters as it last reported them (each
   * reports at most once per `reportIntervalMs`; the answering isolate's are current).
   */
  | {
      of: "deployment";
      reportIntervalMs: number;
      /** Isolates that reported in the last ten minutes. */
      isolates: number;
      newestReportAt: number;
      oldestReportAt: number;
      /** Those isolates, most recent report first (at most 20). */
      reporters: ReporterView[];
    };

export interface AdminContext {
  /** The operator's token; undefined disables the admin API. */
  token: string | undefined;
  purges: PurgeRegistry;
  stats(): Promise<StatsSnapshot>;
  /**
   * The Prometheus text for `GET /__herdless/metrics` behind the token (Workers). Node serves
   * its metrics before the admin API, without a token, and leaves this unset.
   */
  metrics?: () => Promise<string>;
  /** Where the token is set, for the "disabled" message. */
  tokenHint: string;
  /** The time (session expiry, guess brake). */
  now(): number;
  /** Wrong tokens per client; one per process or isolate. */
  attempts: AttemptLimiter;
}

/** The header the dashboard sends with its requests: a page on another site cannot send it without CORS, which herdless never grants. */
export const ADMIN_REQUEST_HEADER = "x-herdless-request";

type Auth = { kind: "bearer" | "session" | "none" | "wrong" } | { kind: "slowed"; waitMs: number };

/**
 * The admin API shared by both runtimes: the dashboard, a login that sets a session cookie
 * for it, stats and purge. Every route needs the token as `Authorization: Bearer …`, or the
 * dashboard's session cookie (an HMAC'd expiry, see auth.ts); a state change made with the
 * cookie must also show it comes from the dashboard's own origin (`Sec-Fetch-Site:
 * same-origin` or the {@link ADMIN_REQUEST_HEADER}). Wrong tokens are slowed down per client.
 */
export async function handleAdmin(request: AdminRequest, ctx: AdminContext): Promise<AdminResponse> {
  if (request.path === ADMIN_PREFIX.slice(0, -1))
    return { status: 308, headers: [["location", ADMIN_PREFIX], NO_STORE], body: "" };
  const token = ctx.token;
  if (!token) return text(404, `herdless admin API is disabled: no admin token is configured (${ctx.tokenHint})`);
  const byMethod = await answerByMethod(request, ctx.metrics !== undefined, (get) => handleAdmin(get, ctx));
  if (byMethod) return byMethod;
  const route = `${request.method} ${request.path}`;
  if (route === `POST ${ADMIN_PREFIX}login`) return login(request, ctx, token);
  const auth = await authenticate(request, ctx, token);
  if (auth.kind === "slowed") return slowedDown(auth.waitMs, request.path === ADMIN_PREFIX);
  const authorized = auth.kind === "bearer" || auth.kind === "session";
  if (request.path === ADMIN_PREFIX && request.method === "GET") {
    return authorized ? html(200, dashboardHtml()) : html(401, loginHtml(false));
  }
  if (!authorized)
    return json(401, { error: "missing or wrong admin token: send Authorization: Bearer <token>" }, [
      ["www-authenticate", 'Bearer realm="herdless"'],
    ]);
  if (route === `GET ${ADMIN_PREFIX}stats`) return json(200, await ctx.stats());
  if (route === `GET ${ADMIN_PREFIX}metrics` && ctx.metrics)
    return {
      status: 200,
      headers: [["content-type", PROMETHEUS_CONTENT_TYPE], NO_STORE, ...SECURITY_HEADERS],
      body: await ctx.metrics(),
    };
  if (route === `POST ${ADMIN_PREFIX}purge`) {
    if (auth.kind === "session" && !sameOrigin(request))
      return json(403, {
        error: `a purge signed in with the dashboard cookie must come from the dashboard (Sec-Fetch-Site: same-origin or ${ADMIN_REQUEST_HEADER}); scripts use Authorization: Bearer`,
      });
    return purge(request, ctx);
  }
  return json(404, {
    error: `no admin route ${route}; routes: GET ${ADMIN_PREFIX}, GET ${ADMIN_PREFIX}stats, ${ctx.metrics ? `GET ${ADMIN_PREFIX}metrics, ` : ""}POST ${ADMIN_PREFIX}purge`,
  });
}

/** A bearer token is checked (and counted when wrong) unless the client is being slowed down; a cookie is a session or nothing. */
async function authenticate(request: AdminRequest, ctx: AdminContext, token: string): Promise<Auth> {
  const authorization = request.headers.get("authorization");
  if (authorization?.toLowerCase().startsWith("bearer ")) {
    return (await checkToken(authorization.slice(7).trim(), request, ctx, token)) ?? { kind: "bearer" };
  }
  const session = cookieValue(request.headers.get("cookie"));
  if (await sessionValid(session, token, ctx.now())) return { kind: "session" };
  return { kind: "none" };
}

/** Undefined when `presented` is the token; else why not. */
async function checkToken(
  presented: string | null,
  request: AdminRequest,
  ctx: AdminContext,
  token: string,
): Promise<Auth | undefined> {
  const now = ctx.now();
  const waitMs = ctx.attempts.waitMs(request.client, now);
  // Checked only once the wait is over, so a guess sent early learns nothing.
  if (waitMs > 0) return { kind: "slowed", waitMs };
  if (await tokenMatches(presented, token)) {
    ctx.attempts.succeeded(request.client);
    return undefined;
  }
  ctx.attempts.failed(request.client, now);
  return { kind: "wrong" };
}

/**
 * Fetch metadata says where a browser request comes from; a browser without it (or a tool)
 * must send the dashboard's custom header, which a cross-site form or script cannot.
 */
function sameOrigin(request: AdminRequest): boolean {
  const site = request.headers.get("sec-fetch-site");
  if (site !== null) return site === "same-origin";
  return request.headers.get(ADMIN_REQUEST_HEADER) !== null;
}

async function purge(request: AdminRequest, ctx: AdminContext): Promise<AdminResponse> {
  if (!isJsonMediaType(request.headers.get("content-type"))) {
    return json(415, { error: "purge body must be JSON: send Content-Type: application/json" });
  }
  let command;
  try {
    const body = await request.text(MAX_BODY_BYTES);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return json(400, { error: "purge body is not valid JSON" });
    }
    command = parsePurgeCommand(parsed);
  } catch (error) {
    return json(400, { error: error instanceof Error ? error.message : String(error) });
  }
  try {
    await ctx.purges.purge(command);
  } catch (error) {
    // Recorded, but some processes were not seen to hold it: not a success a script may take
    // as "never served again". Named, so the operator knows whom; a retry records it anew.
    if (error instanceof PurgeUnconfirmedError)
      return json(
        503,
        {
          error: `herdless admin: ${error.message}`,
          recorded: command,
          ...(error.unconfirmed ? { unconfirmed: error.unconfirmed } : {}),
        },
        [["retry-after", "1"]],
      );
    // The purge list is out of reach (Redis down, the registry object unreachable): nothing was
    // recorded, and the caller may try again; as the Worker says it, not an internal error.
    const message = error instanceof Error ? error.message : String(error);
    return json(503, { error: `herdless admin: ${message}` }, [["retry-after", "1"]]);
  }
  return json(200, { purged: command });
}

/**
 * The login form's post. One from another site is refused before its token is read, and one
 * without a token is no guess: neither counts against the client's address. A page on any
 * site the operator (or anyone behind the same address) opened could post it empty eleven
 * times, a simple request a browser sends without asking, and lock that address out of the
 * admin API for minutes at a time, bearer scripts and purge hooks included.
 */
async function login(request: AdminRequest, ctx: AdminContext, token: string): Promise<AdminResponse> {
  const site = request.headers.get("sec-fetch-site");
  if (site !== null && site !== "same-origin" && site !== "none") return html(403, loginHtml(true));
  const form = new URLSearchParams(await request.text(MAX_BODY_BYTES).catch(() => ""));
  const presented = form.get("token");
  if (!presented) return html(401, loginHtml(true));
  const refused = await checkToken(presented, request, ctx, token);
  if (refused?.kind === "slowed") return slowedDown(refused.waitMs, true);
  if (refused) return html(401, loginHtml(true));
  const session = await createSession(token, ctx.now());
  return {
    status: 303,
    headers: [
      ["location", ADMIN_PREFIX],
      // The session, not the token: it expires, and it is useless anywhere but this admin API.
      // SameSite=Strict keeps other sites from riding it; purge also wants a same-origin signal.
      [
        "set-cookie",
        `${COOKIE}=${session}; Path=${ADMIN_PREFIX}; Max-Age=${SESSION_TTL_MS / 1000}; HttpOnly; SameSite=Strict${request.https ? "; Secure" : ""}`,
      ],
      NO_STORE,
      ...SECURITY_HEADERS,
    ],
    body: "",
  };
}

/** The session cookie's raw value (parted by `,` too: workerd joins Cookie fields with `, `); it cannot throw. */
function cookieValue(header: string | null): string | null {
  for (const part of (header ?? "").split(/[;,]/)) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === COOKIE) return part.slice(eq + 1).trim();
  }
  return null;
}

function slowedDown(waitMs: number, page: boolean): AdminResponse {
  const seconds = Math.ceil(waitMs / 1000);
  const answer = page
    ? html(429, loginHtml(true, seconds))
    : json(429, { error: `too many wrong admin tokens from this client: try again in ${seconds} s` });
  answer.headers.push(["retry-after", String(seconds)]);
  return answer;
}

/** Builds the stats snapshot from counters (a process's, an isolate's or a deployment's; `base.scope` says which). */
export function statsSnapshot(
  counters: CounterView,
  guard: GuardSnapshot,
  base: Pick<StatsSnapshot, "runtime" | "mode" | "startedAt" | "now" | "cache" | "scope">,
): StatsSnapshot {
  const series = counters.series;
  const lastComplete = series.filter((s) => s.at < Math.floor(base.now / 1000) * 1000).at(-1);
  return {
    ...base,
    requests: requestsOf(counters.served),
    hitRatio: hitRatioOf(counters.served),
    served: counters.served,
    origin: counters.origin,
    originRequests: originRequestsOf(counters.origin),
    originPerSecond: lastComplete?.origin ?? 0,
    breaker: guard.breaker,
    protection: { ...zeroProtection(), ...counters.protection },
    originInFlight: guard.inFlight,
    queueDepth: guard.queued,
    topKeys: counters.topKeys,
    series,
  };
}
