import { adminPath } from "../core/admin/admin-path.ts";
import { concatBytes } from "../core/http/http.ts";
import {
  type AttemptLimiter,
  handleAdmin,
  type AdminRequest,
  type AdminResponse,
  type StatsSnapshot,
} from "../core/admin/admin.ts";
import type { PurgeRegistry } from "../core/admin/purge.ts";
import { ADMIN_TOKEN_CHARACTERS } from "../core/config/sections.ts";

/** Where the Worker's admin token is set, for the "disabled" message. */
export const TOKEN_HINT =
  "set the HERDLESS_ADMIN_TOKEN secret: npx wrangler secret put HERDLESS_ADMIN_TOKEN; under npm start, in .dev.vars or the environment";

/** The shortest token accepted (as `admin.token` in the config). */
const MIN_TOKEN_LENGTH = 16;

export interface WorkerAdmin {
  /** `env.HERDLESS_ADMIN_TOKEN`, else `admin.token` of the config. */
  token: string | undefined;
  purges: PurgeRegistry;
  stats(): Promise<StatsSnapshot>;
  /** The Prometheus text of `GET /__herdless/metrics`. */
  metrics(): Promise<string>;
  /** Wrong tokens per client, kept by the isolate. */
  attempts: AttemptLimiter;
  now(): number;
}

/**
 * Answers a request to `/__herdless/…` with the admin API of src/core/admin.ts: the
 * dashboard, its login, `GET stats`, `GET metrics` (Prometheus) and `POST purge`, all behind the token. A token shorter than 16 characters
 * or with characters no header carries answers 500 naming the secret; a registry that cannot be reached answers 503.
 */
export async function adminResponse(request: Request, url: URL, admin: WorkerAdmin): Promise<Response> {
  if (admin.token !== undefined && admin.token.length < MIN_TOKEN_LENGTH) {
    return plain(500, `herdless: HERDLESS_ADMIN_TOKEN must be at least ${MIN_TOKEN_LENGTH} characters (${TOKEN_HINT})`);
  }
  if (admin.token !== undefined && !ADMIN_TOKEN_CHARACTERS.test(admin.token)) {
    // Never matched: no Authorization header carries it as written (config/sections.ts).
    return plain(
      500,
      `herdless: HERDLESS_ADMIN_TOKEN must be visible ASCII only (no spaces, control characters or accented letters) (${TOKEN_HINT})`,
    );
  }
  try {
    return toResponse(
      await handleAdmin(toAdminRequest(request, url), {
        token: admin.token,
        purges: admin.purges,
        stats: () => admin.stats(),
        metrics: () => admin.metrics(),
        attempts: admin.attempts,
        now: () => admin.now(),
        tokenHint: TOKEN_HINT,
      }),
    );
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return new Response(JSON.stringify({ error: `herdless admin: ${message}` }), {
      status: 503,
      headers: { "content-type": "application/json", "cache-control": "no-store", "retry-after": "1" },
    });
  }
}

function toAdminRequest(request: Request, url: URL): AdminRequest {
  return {
    method: request.method,
    path: adminPath(url.pathname),
    headers: request.headers,
    text: (limit) => readText(request, limit),
    https: url.protocol === "https:",
    // Cloudflare sets CF-Connecting-IP on every request that reaches a Worker; a client cannot forge it there.
    client: request.headers.get("cf-connecting-ip") ?? "unknown",
  };
}

/** The body as text, refused (without reading on) once it passes `limit` bytes. */
export async function readText(request: Request, limit: number): Promise<string> {
  const tooLarge = () => new Error(`request body is larger than ${limit} bytes`);
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) throw tooLarge();
  if (!request.body) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge();
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(concatBytes(chunks, size));
}

function toResponse(res: AdminResponse): Response {
  const headers = new Headers();
  for (const [name, value] of res.headers) headers.append(name, value);
  return new Response(res.status === 303 || res.body === "" ? null : res.body, { status: res.status, headers });
}

function plain(status: number, message: string): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}
