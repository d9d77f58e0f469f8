import { Agent, request, type IncomingHttpHeaders } from "node:http";

/**
 * Seeded client traffic for the randomized check of herdless's promises (promises.test.ts):
 * bursts of requests of every kind a client sends (see {@link planRequest}), each recorded
 * with what it got, and purges through the admin API. The same seed plans the same requests.
 */

/** mulberry32: a small seeded generator, the same numbers for the same seed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface PlannedRequest {
  id: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  /** Upload size, sent in four pieces 100 ms apart when `slowUpload`. */
  upload: number;
  slowUpload: boolean;
  /** The client leaves: `early` after `hangupMs` whatever arrived, `head` once the head arrived. */
  hangup?: "early" | "head";
  hangupMs: number;
  webSocket: boolean;
}

export interface ClientRecord extends PlannedRequest {
  /** Where it was sent (which member of a fleet). */
  base: string;
  sentAt: number;
  doneAt?: number;
  status?: number;
  responseHeaders?: IncomingHttpHeaders;
  /**
   * How far the request got, for a hang's message: `queued` (no connection yet: the agent's
   * pool was full), `connected` (on a connection, new or kept alive), `sent` (written whole).
   */
  progress: "queued" | "connected" | "sent";
  /** The body's first 400 bytes, and its length. */
  body: string;
  length: number;
  error?: string;
}

const KINDS: [string, number][] = [
  ["fresh", 20],
  ["swr", 10],
  ["sie", 12],
  ["priv", 6],
  ["nostore", 5],
  ["err", 4],
  ["slow", 8],
  ["hang", 2],
  ["cut", 3],
  ["vary", 8],
  ["redir", 4],
  ["big", 3],
];
const TOTAL = KINDS.reduce((sum, [, weight]) => sum + weight, 0);

function pick(rand: () => number): string {
  let at = rand() * TOTAL;
  for (const [kind, weight] of KINDS) if ((at -= weight) < 0) return kind;
  return "fresh";
}

/** One request: mostly GETs of a few hot keys, with everything else a client sends mixed in. */
export function planRequest(rand: () => number, id: string): PlannedRequest {
  const kind = pick(rand);
  const n = rand() < 0.7 ? Math.floor(rand() * 3) : Math.floor(rand() * 150);
  const path = `/${kind}/${n}`;
  const headers: Record<string, string> = { "x-client-id": id };
  const m = rand();
  const method =
    m < 0.75 ? "GET" : m < 0.83 ? "HEAD" : m < 0.88 ? "POST" : m < 0.91 ? "PUT" : m < 0.94 ? "DELETE" : "OPTIONS";
  const r = rand();
  if (r < 0.1) headers.cookie = `session=${id}`;
  else if (r < 0.15) headers.authorization = `Bearer ${id}`;
  const c = rand();
  if (c < 0.08) headers["cache-control"] = "no-cache";
  else if (c < 0.13) headers["cache-control"] = "max-age=0";
  if (rand() < 0.1) headers["if-none-match"] = `"${path}-v1"`;
  if (rand() < 0.08) headers.range = rand() < 0.5 ? "bytes=0-9" : "bytes=100-";
  headers["accept-language"] = ["en", "fr", "de"][Math.floor(rand() * 3)]!;
  const h = rand();
  const upload = method === "POST" || method === "PUT" ? Math.floor(rand() * 200_000) : 0;
  return {
    id,
    method,
    path,
    headers,
    upload,
    slowUpload: upload > 0 && rand() < 0.2,
    ...(h < 0.05 ? { hangup: "early" as const } : h < 0.1 ? { hangup: "head" as const } : {}),
    hangupMs: Math.floor(rand() * 200),
    webSocket: method === "GET" && rand() < 0.01,
  };
}

const agent = new Agent({ keepAlive: true, maxSockets: 1_000 });

/** What a client tells the run while it waits, and when the run gives up on it (promises-run.ts). */
export interface ClientWatch {
  /** Heard whenever an answer's head, a piece of its body or its end arrives. */
  moved(): void;
  /** Once settled, a client not yet answered is cut off and counts as never answered (`hung`). */
  giveUp: Promise<void>;
}

/** Sends `plan` to `base` under Host `site.test`; resolves with what came back, never rejects. */
export function sendPlanned(base: string, plan: PlannedRequest, watch: ClientWatch): Promise<ClientRecord> {
  const record: ClientRecord = { ...plan, base, sentAt: performance.now(), progress: "queued", body: "", length: 0 };
  return new Promise((resolve) => {
    let settled = false;
    const done = (error?: string) => {
      if (settled) return;
      settled = true;
      watch.moved();
      record.doneAt = performance.now();
      if (error !== undefined) record.error = error;
      resolve(record);
    };
    const headers: Record<string, string> = { host: "site.test", ...plan.headers };
    if (plan.webSocket)
      Object.assign(headers, {
        connection: "upgrade",
        upgrade: "websocket",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
      });
    if (plan.upload > 0) headers["content-length"] = String(plan.upload);
    const req = request(`${base}${plan.path}`, { method: plan.method, headers, agent: plan.webSocket ? false : agent });
    void watch.giveUp.then(() => {
      if (settled) return;
      req.destroy();
      done("hung");
    });
    if (plan.hangup === "early")
      setTimeout(() => {
        req.destroy();
        done("hung up");
      }, plan.hangupMs);
    req.on("upgrade", (res, socket) => {
      record.status = res.statusCode ?? 0;
      socket.on("error", () => undefined);
      socket.write("ping");
      socket.once("data", () => socket.destroy());
      socket.on("close", () => done());
    });
    req.on("response", (res) => {
      watch.moved();
      record.status = res.statusCode ?? 0;
      record.responseHeaders = res.headers;
      if (plan.hangup === "head") {
        res.destroy();
        return done("hung up");
      }
      res.on("data", (chunk: Buffer) => {
        watch.moved();
        if (record.body.length < 400) record.body += chunk.toString("latin1").slice(0, 400 - record.body.length);
        record.length += chunk.length;
      });
      res.on("end", () => done());
      res.on("error", (error) => done(`body: ${error.message}`));
      res.on("aborted", () => done("body aborted"));
    });
    req.on("error", (error) => done(`request: ${error.message}`));
    req.once("socket", () => (record.progress = "connected"));
    req.once("finish", () => (record.progress = "sent"));
    writeUpload(req, plan);
  });
}

function writeUpload(req: ReturnType<typeof request>, plan: PlannedRequest): void {
  if (plan.upload === 0) return void req.end();
  const piece = Buffer.alloc(Math.ceil(plan.upload / 4), 0x62);
  let left = plan.upload;
  const next = () => {
    if (req.destroyed) return;
    const part = piece.subarray(0, Math.min(piece.length, left));
    left -= part.length;
    if (left <= 0) return void req.end(part);
    req.write(part);
    if (plan.slowUpload) setTimeout(next, 100);
    else next();
  };
  next();
}

export interface PurgeRecord {
  at: number;
  /** Paths purged, or "all" (every key, or a tag: taken as every key). */
  paths: string[] | "all";
  soft: boolean;
  status: number;
}

/** A purge through the admin API: a few URLs, or everything, hard or soft. */
export async function purge(base: string, token: string, rand: () => number): Promise<PurgeRecord> {
  const soft = rand() < 0.5;
  const all = rand() < 0.15;
  const paths = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => `/${pick(rand)}/${Math.floor(rand() * 3)}`);
  const body = JSON.stringify(all ? { all: true, soft } : { urls: paths.map((p) => `http://site.test${p}`), soft });
  const at = performance.now();
  // A member shut down as it was sent resets it (status 0): it may have been applied all the same.
  const status = await fetch(`${base}/__herdless/purge`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body,
  }).then(
    async (res) => (await res.arrayBuffer(), res.status),
    () => 0,
  );
  return { at, paths: all ? "all" : paths, soft, status };
}
