import type { GuardSnapshot } from "../guard/origin-guard.ts";
import { parsePurgeCommand, type PurgeRegistry } from "./purge.ts";
import type { Metrics } from "./metrics.ts";
import { dashboardHtml, loginHtml } from "./dashboard.ts";

export const ADMIN_PREFIX = "/__herdless/";
const COOKIE = "herdless_admin";
const MAX_BODY_BYTES = 64 * 1024;

export interface AdminRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  headers: { get(name: string): string | null };
  /** Reads the body as text; rejects past `limit` bytes. */
  text(limit: number): Promise<string>;
}

export interface AdminResponse {
  status: number;
  headers: [string, string][];
  body: string;
}

/** The numbers an operator watches: GET /__herdless/stats. */
export interface StatsSnapshot {
  runtime: "node" | "cloudflare";
  mode: string;
  startedAt: number;
  now: number;
  requests: number;
  hitRatio: number;
  served: Metrics["served"];
  origin: Metrics["origin"];
  originRequests: number;
  /** Origin requests in the last complete second. */
  originPerSecond: number;
  breaker: GuardSnapshot["breaker"];
  originInFlight: number;
  queueDepth: number;
  topKeys: { key: string; requests: number }[];
  series: ReturnType<Metrics["series"]>;
  cache?: { entries: number; bytes: number; evictions: number };
}

export interface AdminContext {
  /** The operator's token; undefined disables the admin API. */
  token: string | undefined;
  purges: PurgeRegistry;
  stats(): Promise<StatsSnapshot>;
  /** Where the token is set, for the "disabled" message. */
  tokenHint: string;
}

/**
 * The admin API shared by both runtimes: the dashboard, a login that sets a cookie for it,
 * stats and purge. Every route needs the token, as `Authorization: Bearer …` or the
 * dashboard's cookie; the comparison takes the same time whatever the guess.
 */
export async function handleAdmin(request: AdminRequest, ctx: AdminContext): Promise<AdminResponse> {
  if (!ctx.token) return text(404, `herdless admin API is disabled: no admin token is configured (${ctx.tokenHint})`);
  const route = `${request.method} ${request.path}`;
  if (route === `POST ${ADMIN_PREFIX}login`) return login(request, ctx.token);
  const authorized = await tokenMatches(presentedToken(request), ctx.token);
  if (request.path === ADMIN_PREFIX && request.method === "GET") {
    return authorized ? html(200, dashboardHtml()) : html(401, loginHtml(false));
  }
  if (!authorized)
    return json(401, { error: "missing or wrong admin token: send Authorization: Bearer <token>" }, [
      ["www-authenticate", 'Bearer realm="herdless"'],
    ]);
  if (route === `GET ${ADMIN_PREFIX}stats`) return json(200, await ctx.stats());
  if (route === `POST ${ADMIN_PREFIX}purge`) return purge(request, ctx);
  return json(404, {
    error: `no admin route ${route}; routes: GET ${ADMIN_PREFIX}, GET ${ADMIN_PREFIX}stats, POST ${ADMIN_PREFIX}purge`,
  });
}

async function purge(request: AdminRequest, ctx: AdminContext): Promise<AdminResponse> {
  if (!(request.headers.get("content-type") ?? "").includes("application/json")) {
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
  await ctx.purges.purge(command);
  return json(200, { purged: command });
}

async function login(request: AdminRequest, token: string): Promise<AdminResponse> {
  const form = new URLSearchParams(await request.text(MAX_BODY_BYTES).catch(() => ""));
  if (!(await tokenMatches(form.get("token"), token))) return html(401, loginHtml(true));
  return {
    status: 303,
    headers: [
      ["location", ADMIN_PREFIX],
      // SameSite=Strict keeps other sites from riding the cookie; the purge route also requires a JSON body.
      ["set-cookie", `${COOKIE}=${encodeURIComponent(token)}; Path=${ADMIN_PREFIX}; HttpOnly; SameSite=Strict`],
      ["cache-control", "no-store"],
    ],
    body: "",
  };
}

function presentedToken(request: AdminRequest): string | null {
  const auth = request.headers.get("authorization");
  if (auth?.toLowerCase().startsWith("bearer ")) return auth.slice(7).trim();
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === COOKIE) return decodeURIComponent(value.join("="));
  }
  return null;
}

/** Compares digests, so neither the token's length nor its prefix leaks through timing. */
export async function tokenMatches(presented: string | null, expected: string): Promise<boolean> {
  if (presented === null) return false;
  const encoder = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(presented)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

const NO_STORE: [string, string] = ["cache-control", "no-store"];

function json(status: number, body: unknown, extra: [string, string][] = []): AdminResponse {
  return { status, headers: [["content-type", "application/json"], NO_STORE, ...extra], body: JSON.stringify(body) };
}

function text(status: number, body: string): AdminResponse {
  return { status, headers: [["content-type", "text/plain; charset=utf-8"], NO_STORE], body: `${body}\n` };
}

function html(status: number, body: string): AdminResponse {
  return {
    status,
    headers: [
      ["content-type", "text/html; charset=utf-8"],
      NO_STORE,
      [
        "content-security-policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; img-src data:",
      ],
    ],
    body,
  };
}

/** Builds the stats snapshot from a runtime's counters. */
export function statsSnapshot(
  metrics: Metrics,
  guard: GuardSnapshot,
  base: Pick<StatsSnapshot, "runtime" | "mode" | "startedAt" | "now" | "cache">,
): StatsSnapshot {
  const series = metrics.series();
  const lastComplete = series.filter((s) => s.at < Math.floor(base.now / 1000) * 1000).at(-1);
  return {
    ...base,
    requests: metrics.requests,
    hitRatio: metrics.hitRatio,
    served: metrics.served,
    origin: metrics.origin,
    originRequests: metrics.originRequests,
    originPerSecond: lastComplete?.origin ?? 0,
    breaker: guard.breaker,
    originInFlight: guard.inFlight,
    queueDepth: guard.queued,
    topKeys: metrics.topKeys(10),
    series,
  };
}
