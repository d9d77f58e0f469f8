import type { OriginCall } from "./promises-origin.ts";
import type { ClientRecord, PurgeRecord } from "./promises-traffic.ts";

/**
 * The promises a seeded run is judged on (promises.test.ts), each a list of violations
 * (empty: kept). See docs/configuration.md for the exceptions they allow: a hard purge or an
 * unsafe method's success ends a stored copy (no stale-if-error after it), a `500` is asked
 * again by the next request.
 */
export interface RunRecord {
  cap: number;
  /** `defaults.refreshAhead`: a copy is renewed this share of its lifetime early. */
  refreshAhead: number;
  /** `defaults.honorRequestNoCache`: a client's `no-cache` or `max-age=0` revalidates. */
  honorRequestNoCache: boolean;
  peak: number;
  atPeak: OriginCall[];
  calls: OriginCall[];
  clients: ClientRecord[];
  purges: PurgeRecord[];
  /**
   * When the deployment served in its documented degraded mode (a fleet cut off from Redis:
   * docs/node.md, "When Redis goes away"): each process fills on its own then, so the
   * collapse and stale promises are not judged for what overlaps these. The cap always is.
   */
  degraded: Window[];
  /** The deployment's faults, as it saw them (for a failure's message). */
  story: string[];
  /** How the deployment stood once the clients settled (for a failure's message). */
  looks: string[];
  /** In a seed with an outage: the GET of the run's stand-in copy sent as the outage began (promises-run.ts). */
  standIn?: ClientRecord;
}

export interface Window {
  from: number;
  to: number;
  /** The member cut off (its base URL), and when it was on Redis again (undefined: never). */
  member?: string;
  back?: number;
}

/** Whether `[from, to]` overlaps a degraded window. */
function degradedDuring(run: RunRecord, from: number, to: number): boolean {
  return run.degraded.some((w) => w.from <= to && w.to >= from);
}

/**
 * Whether an origin request for `path` starting at `at` may be a fill its member began on its
 * own while cut off from Redis: a client of `path` sent to that member was waiting then and
 * still is. Such a fill, queued for a slot past the member's return, calls the origin without
 * the key's lease in Redis, beside the fleet's fill (docs/node.md, known limits). Judged by the
 * requests, not by a time after the return: on a loaded machine its queue's timers fire late.
 */
function filledOnItsOwn(run: RunRecord, path: string, at: number): boolean {
  return run.degraded.some((w) =>
    run.clients.some(
      (c) =>
        c.path === path &&
        (w.member === undefined || c.base === w.member) &&
        c.sentAt <= (w.back ?? Infinity) &&
        (c.doneAt ?? Infinity) >= w.from &&
        (c.doneAt ?? Infinity) > at,
    ),
  );
}

/** Kinds the cache shares (a GET without credentials is one fill per key at a time). */
const SHARED_KINDS = new Set(["fresh", "swr", "sie", "err", "slow", "hang", "cut", "vary", "redir", "big"]);
/** Kinds whose answer is small and always whole: stored, so not asked again within its lifetime. */
const LIFETIME_KINDS = new Set(["fresh", "slow", "vary", "redir"]);
const LIFETIME_MS = 2_000;
/** How much earlier than the origin saw it herdless may have asked (its request time starts the lifetime). */
const SLACK_MS = 300;

const kindOf = (path: string) => path.split("/")[1] ?? "";
/** A fill's key: its path, and its language where the answer varies on it. */
const keyOf = (path: string, language: string | undefined) =>
  kindOf(path) === "vary" ? `${path} ${language ?? "-"}` : path;

export function violations(run: RunRecord): string[] {
  return [
    ...capKept(run),
    ...ownErrors(run),
    ...leaks(run),
    ...hung(run),
    ...oneFillAtATime(run),
    ...oneFillPerLifetime(run),
    ...staleWhileRefresh(run),
    ...staleIfError(run),
  ];
}

/**
 * How long before the origin hears it a request herdless gave up on (a timeout, a client gone)
 * may be taken for ended: herdless closes the connection and frees the permit at once, and a
 * request it sends next on another kept-alive connection can reach the origin's event loop
 * before that close does (the same on any network). Measured here: up to 3 ms on a loaded
 * machine; a request sent without a permit stays in progress far longer.
 */
const CLOSE_SLACK_MS = 25;

/** Most requests in progress at the origin at once, an abandoned one ended when herdless left it. */
export function settledPeak(calls: OriginCall[]): { peak: number; at: OriginCall[] } {
  const edges: [number, number, OriginCall][] = [];
  for (const call of calls) {
    const end = call.end === undefined ? Infinity : call.complete ? call.end : call.end - CLOSE_SLACK_MS;
    // Abandoned within the slack: the origin may have heard of it late; it held no permit past that.
    if (end <= call.start) continue;
    edges.push([call.start, 1, call], [end, -1, call]);
  }
  // An end before a start at the same instant: the permit was handed over.
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const open = new Set<OriginCall>();
  let best = { peak: 0, at: [] as OriginCall[] };
  for (const [, step, call] of edges) {
    if (step === 1) open.add(call);
    else open.delete(call);
    if (open.size > best.peak) best = { peak: open.size, at: [...open] };
  }
  return best;
}

/**
 * What a run must have shown for its verdict to mean something, each unmet one a line: the
 * origin kept busy to the cap (`cap`), the outage met by the stored stand-in copy (`stand-in`),
 * a member cut off from Redis (`degraded`).
 */
export function unexercised(run: RunRecord, wanted: ("cap" | "stand-in" | "degraded")[]): string[] {
  const out: string[] = [];
  const { peak, at } = settledPeak(run.calls);
  if (wanted.includes("cap") && peak !== run.cap)
    out.push(
      `origin's busiest moment: ${peak} requests at once, not the cap ${run.cap} (${at.map((c) => `${c.path} ${fmt(c)}`).join("; ")})`,
    );
  const standIn = run.standIn;
  const status = String(standIn?.responseHeaders?.["cache-status"]);
  const stores = run.clients
    .filter((c) => c.id.startsWith("standin-stored"))
    .map((c) => `${c.status ?? c.error} ${String(c.responseHeaders?.["cache-status"])}`);
  if (wanted.includes("stand-in") && (standIn?.status !== 200 || !status.includes("fwd=stale")))
    out.push(
      `the outage's stand-in GET got ${standIn === undefined ? "nothing (no outage)" : `${standIn.status} (${status}, ${standIn.error ?? "answered"})`}, not the stored copy (fwd=stale); stored by ${stores.join(", ") || "nothing"}`,
    );
  if (wanted.includes("degraded") && run.degraded.length === 0) out.push("no member was ever cut off from Redis");
  return out;
}

function capKept(run: RunRecord): string[] {
  const { peak, at } = settledPeak(run.calls);
  if (peak <= run.cap) return [];
  return [
    `origin saw ${peak} requests at once (${run.peak} as it heard them), cap ${run.cap}: ${at.map((c) => `${c.path} ${fmt(c)}`).join("; ")}`,
  ];
}

function ownErrors(run: RunRecord): string[] {
  return (
    run.clients
      // The origin's 500 to another client's request, its status alone (failure-answer.ts), names it.
      // A negative entry (origin.errorTtlMs) keeps the origin's body and Content-Type alone.
      .filter(
        (c) =>
          c.status === 500 &&
          c.responseHeaders?.["x-origin"] === undefined &&
          !/fwd-status=500|detail=negative/.test(String(c.responseHeaders?.["cache-status"])),
      )
      .map(
        (c) =>
          `herdless's own 500 for ${c.method} ${c.path} (${String(c.responseHeaders?.["cache-status"])}): ${c.body.slice(0, 80)}`,
      )
  );
}

function leaks(run: RunRecord): string[] {
  const out: string[] = [];
  for (const c of run.clients) {
    const named = /for (c[\d-]+)/.exec(c.body)?.[1];
    if (named !== undefined && named !== c.id) out.push(`${c.id} (${c.method} ${c.path}) got ${named}'s answer`);
    const cookies = c.responseHeaders?.["set-cookie"] ?? [];
    for (const cookie of cookies) {
      const sid = /sid=([^;]*)/.exec(cookie)?.[1];
      if (sid !== c.id) out.push(`${c.id} (${c.method} ${c.path}) got Set-Cookie ${cookie}`);
    }
  }
  return out;
}

function hung(run: RunRecord): string[] {
  return run.clients
    .filter((c) => c.error === "hung")
    .map(
      (c) =>
        `${c.id} ${c.method} ${c.path} ${JSON.stringify(c.headers)} never answered (${c.status === undefined ? `no head, ${c.progress}` : `head ${c.status}, ${c.length} bytes of body`}, sent at ${Math.round(c.sentAt)} to ${c.base}, given up on at ${Math.round(c.doneAt ?? 0)})`,
    );
}

function sharedCalls(run: RunRecord, kinds: Set<string>): Map<string, OriginCall[]> {
  const byKey = new Map<string, OriginCall[]>();
  for (const call of run.calls) {
    if (!call.shared || !kinds.has(kindOf(call.path))) continue;
    const key = keyOf(call.path, call.variant);
    byKey.set(key, [...(byKey.get(key) ?? []), call]);
  }
  return byKey;
}

/**
 * Whether a client of `path` was sent to the origin on its own before `at` because the URL's
 * answers could not be shared (http.md, "Pages whose answers cannot be shared": at most
 * `origin.maxConcurrency` such requests per URL beside its fill).
 */
function sentAlone(run: RunRecord, path: string, at: number): boolean {
  return run.clients.some(
    (c) =>
      c.path === path && c.sentAt < at && String(c.responseHeaders?.["cache-status"]).includes("detail=uncacheable"),
  );
}

function oneFillAtATime(run: RunRecord): string[] {
  const out: string[] = [];
  for (const [key, calls] of sharedCalls(run, SHARED_KINDS)) {
    const sorted = [...calls].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      const next = sorted[i]!;
      const open = sorted.slice(0, i).filter((c) => (c.end ?? Infinity) > next.start);
      if (open.some((c) => degradedDuring(run, c.start, next.start))) continue;
      if ([next, ...open].some((c) => filledOnItsOwn(run, c.path, c.start))) continue;
      const allowed = sentAlone(run, next.path, next.start) ? run.cap : 0;
      const before = open[0];
      if (before !== undefined && open.length > allowed)
        out.push(`${key}: two shared origin requests at once (${fmt(before)} and ${fmt(next)})`);
    }
  }
  return out;
}

/** A purge or an unsafe request for `path` between `from` and `to`: the copy may be gone. */
function invalidated(run: RunRecord, path: string, from: number, to: number): boolean {
  const purged = run.purges.some((p) => p.at < to && (p.paths === "all" || p.paths.includes(path)));
  const unsafe = run.clients.some(
    (c) =>
      c.path === path &&
      ["POST", "PUT", "DELETE"].includes(c.method) &&
      c.sentAt < to &&
      (c.doneAt ?? Infinity) > from - 50,
  );
  return purged || unsafe;
}

/** A client of `path` sent `no-cache` or `max-age=0` between `from` and `to` (honorRequestNoCache). */
function askedToRevalidate(run: RunRecord, path: string, from: number, to: number): boolean {
  return run.clients.some(
    (c) =>
      c.path === path && c.sentAt < to && (c.doneAt ?? Infinity) > from && c.headers["cache-control"] !== undefined,
  );
}

function oneFillPerLifetime(run: RunRecord): string[] {
  const out: string[] = [];
  for (const [key, calls] of sharedCalls(run, LIFETIME_KINDS)) {
    const sorted = [...calls].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      const filled = sorted[i - 1]!;
      const next = sorted[i]!;
      if (!filled.complete || ![200, 302, 304].includes(filled.status ?? 0)) continue;
      if (next.start >= filled.start + LIFETIME_MS * (1 - run.refreshAhead) - SLACK_MS) continue;
      if (invalidated(run, filled.path, filled.start, next.start) || sentAlone(run, next.path, next.start)) continue;
      if (degradedDuring(run, filled.start, next.start) || filledOnItsOwn(run, next.path, next.start)) continue;
      if (run.honorRequestNoCache && askedToRevalidate(run, filled.path, filled.start, next.start)) continue;
      out.push(
        `${key}: asked again ${Math.round(next.start - filled.start)} ms into its ${LIFETIME_MS} ms lifetime (${fmt(filled)}, then ${fmt(next)})`,
      );
    }
  }
  return out;
}

/** Clients that may be answered from the shared copy: GET or HEAD, no credentials, still listening. */
function sharedClient(c: ClientRecord): boolean {
  return (
    (c.method === "GET" || c.method === "HEAD") &&
    !c.webSocket &&
    c.headers.cookie === undefined &&
    c.headers.authorization === undefined &&
    c.error === undefined
  );
}

/** When a client first received a whole good copy of `path` that herdless stored (its fill's answer, or a hit). */
function firstGood(run: RunRecord, path: string): number | undefined {
  const stored = (c: ClientRecord) => /(^|; )hit|; stored/.test(String(c.responseHeaders?.["cache-status"]));
  const times = run.clients
    .filter((c) => c.path === path && c.method === "GET" && sharedClient(c) && c.status === 200 && stored(c))
    .map((c) => c.doneAt ?? Infinity);
  return times.length === 0 ? undefined : Math.min(...times);
}

/**
 * The shared clients of pages of `kind` sent once a good copy of their page was stored, with no
 * purge or unsafe request reaching herdless since (sent before the client's answer), and none
 * served while its deployment was degraded.
 */
function afterGoodCopy(run: RunRecord, kind: string): ClientRecord[] {
  return run.clients.filter((c) => {
    if (kindOf(c.path) !== kind || !sharedClient(c)) return false;
    const good = firstGood(run, c.path);
    if (good === undefined || c.sentAt < good || invalidated(run, c.path, good, c.doneAt ?? Infinity)) return false;
    return !degradedDuring(run, c.sentAt, c.doneAt ?? Infinity);
  });
}

/** `/swr/n`: a client that arrives while a slow refresh runs gets the stored copy, not the refresh. */
function staleWhileRefresh(run: RunRecord): string[] {
  const out: string[] = [];
  for (const c of afterGoodCopy(run, "swr")) {
    const refresh = run.calls.find(
      (r) => r.path === c.path && r.shared && r.start < c.sentAt && (r.end ?? Infinity) > c.sentAt,
    );
    if (refresh?.end === undefined) continue;
    if ((c.doneAt ?? Infinity) >= refresh.end && refresh.end - c.sentAt > 400)
      out.push(
        `${c.id} ${c.method} ${c.path} waited ${Math.round((c.doneAt ?? 0) - c.sentAt)} ms on the refresh (${fmt(refresh)}): ${c.status} ${String(c.responseHeaders?.["cache-status"])}`,
      );
  }
  return out;
}

/** `/sie/n`: once a good copy is stored, no client of the shared copy sees the origin's failures. */
function staleIfError(run: RunRecord): string[] {
  const out: string[] = [];
  for (const c of afterGoodCopy(run, "sie")) {
    if (![200, 206, 304].includes(c.status ?? 0))
      out.push(
        `${c.id} ${c.method} ${c.path} ${JSON.stringify(c.headers)} got ${c.status} (${String(c.responseHeaders?.["cache-status"])}) with a good copy stored`,
      );
  }
  return out;
}

function fmt(call: OriginCall): string {
  const end = call.end === undefined ? "open" : `${Math.round(call.end)}`;
  return `${call.method} ${call.status ?? "-"} ${call.conditional ? "conditional " : ""}${Math.round(call.start)}–${end}`;
}
