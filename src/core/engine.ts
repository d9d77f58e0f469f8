import type { CacheStatus } from "./http/cache-status.ts";
import type { Clock } from "./clock.ts";
import { routeFor, type Config, type RoutePolicy } from "./config.ts";
import {
  discardStream,
  type Coordinator,
  type FillRequest,
  type FillResult,
  type PassResponse,
} from "./fill/coordinator.ts";
import { answerFromEntry, notCached, type ClientAsk } from "./http/answer.ts";
import { decide, decideOnFailure, servableOnError, type RequestFacts } from "./http/decision.ts";
import type { Entry } from "./http/entry.ts";
import { isHerdlessError, type HerdlessErrorCode } from "./errors.ts";
import { concatBytes, type HeaderReader } from "./http/http.ts";
import { invalidatedUrls } from "./http/invalidation.ts";
import { keyQuery, primaryKey, variantKey } from "./http/key.ts";
import { clientWantsRevalidation, requestDirectives } from "./http/request-directives.ts";
import { lookup } from "./store/lookup.ts";
import type { Metrics } from "./admin/metrics.ts";
import type { ContentDecoding, FetchLike } from "./origin/origin-client.ts";
import { guardedCallDeps, guardedOriginCall, isGuardRefusal, type GuardedCallDeps } from "./origin/guarded-call.ts";
import { forwardPolicy, originRequestHeaders, type ForwardPolicy } from "./origin/forward.ts";
import type { OriginGuard } from "./guard/origin-guard.ts";
import { applyPurge, type PurgeSnapshot } from "./admin/purge.ts";
import { fromPass, fromStream, synthetic, type EngineResponse } from "./http/respond.ts";
import { TAG_HEADERS, varyPointer } from "./http/response-entry.ts";
import type { RefreshMarks } from "./fill/refresh-marks.ts";
import { SingleFlight } from "./fill/single-flight.ts";
import type { Store } from "./store/store.ts";

export interface EngineRequest {
  method: string;
  /** The URL the client asked for. */
  url: URL;
  headers: HeaderReader;
  /** Every request header as received, in order; what reaches the origin is decided by origin/forward.ts. */
  rawHeaders: [string, string][];
  /** The client's address, for X-Forwarded-For, when the runtime knows it. */
  clientAddress?: string | undefined;
  body?: ReadableStream<Uint8Array> | Uint8Array | null;
}

export interface EngineOptions {
  config: Config;
  clock: Clock;
  /** This edge's own tier: the data center's Cache API, the process LRU. */
  near: Store;
  coordinator: Coordinator;
  /** Used when `coordinator` throws (Durable Object or Redis unreachable): local single-flight. */
  fallback?: Coordinator;
  guard: OriginGuard;
  fetch: FetchLike;
  /** Which Content-Encodings `fetch` decodes (the runtime's rule); undici's by default. */
  decodes?: ContentDecoding;
  /** Keeps work alive after the response (ctx.waitUntil on Workers). */
  background: (work: Promise<unknown>) => void;
  metrics?: Metrics;
  /**
   * The purges in force, as this edge knows them. The runtime keeps the snapshot no older
   * than its propagation bound, and a purge returns only after that bound has passed.
   */
  purges?: () => PurgeSnapshot | Promise<PurgeSnapshot>;
  /** Reports coordinator failures (the adapter logs them). */
  onDegraded?: (error: unknown) => void;
  /**
   * The keys this edge is refreshing, shared by engines that serve one edge (the Worker
   * builds one per request): one background refresh per key, whichever request saw it stale.
   */
  refreshMarks?: RefreshMarks;
  /**
   * Streamed bodies being copied into the near tier (key and token), so one copy is made per
   * entry however many requests read it. Defaults to the engine's own; a runtime that builds
   * an engine per request (Workers) passes one that lives as long as its near tier.
   */
  nearCopies?: Set<string>;
}

/**
 * The request flow of DESIGN.md, runtime-free: route, key, near tier, coordinator, and
 * what to answer when the origin cannot. Adapters turn their requests into
 * {@link EngineRequest} and write the {@link EngineResponse} back.
 *
 * @example
 * const engine = new Engine({ config, clock: systemClock, near, coordinator, guard, fetch, background: (p) => void p });
 * const res = await engine.handle({ method: "GET", url, headers, rawHeaders });
 */
export class Engine {
  private readonly refreshes = new SingleFlight<string, void>();
  private readonly forward: ForwardPolicy;
  private readonly originDeps: GuardedCallDeps;
  private readonly nearCopies: Set<string>;
  constructor(private readonly o: EngineOptions) {
    this.forward = forwardPolicy(o.config);
    this.nearCopies = o.nearCopies ?? new Set();
    this.originDeps = guardedCallDeps(o, (event) => o.metrics?.originCall(event.outcome));
  }

  async handle(request: EngineRequest): Promise<EngineResponse> {
    const route = routeFor(this.o.config, request.url.pathname);
    const facts: RequestFacts = {
      method: request.method,
      hasAuthorization: request.headers.get("authorization") !== null,
      hasCookie: request.headers.get("cookie") !== null,
    };
    // RFC 9110 §9.3.8: TRACE would reflect the request (credentials included); never forwarded.
    if (LOCAL_ONLY_METHODS.has(facts.method)) return notAllowed(facts.method);
    const primary = primaryKey(request.url, route.key);
    if (facts.method !== "GET" && facts.method !== "HEAD") return this.unsafe(request);
    const found = await lookup(this.o.near, primary, primary, request.headers);
    const purges = this.o.purges ? await this.o.purges() : undefined;
    if (purges) found.entry = applyPurge(found.entry, primary, purges);
    const now = this.o.clock.now();
    const decision = decide(found.entry, found.key, facts, route, now);
    const directives = requestDirectives(request.headers);
    // RFC 9111 §5.2.1.7: nothing servable without going forward.
    if (
      directives.onlyIfCached &&
      (decision.kind === "bypass" || decision.kind === "miss" || decision.kind === "revalidate")
    )
      return notCached({ fwd: decision.kind === "bypass" ? "bypass" : found.varyMiss ? "vary-miss" : "uri-miss" });
    const fill = (priority: FillRequest["priority"], revalidate = false, authorized = false) =>
      this.fillRequest(request, route, primary, found.key, priority, purges, revalidate, authorized);
    switch (decision.kind) {
      case "bypass":
        if (decision.reason === "authorization") {
          // Through the coordinator, never from the store: one origin request, stored if shareable.
          const result = await this.fill(fill("foreground", true, true));
          return this.answer(request, result, "request", undefined, primary);
        }
        return this.relay(request, { fwd: "bypass" }, "bypass");
      case "fresh":
      case "stale-while-revalidate": {
        // Request no-cache / max-age, on a route that honours them (request-directives.ts says why not by default).
        if (route.honorRequestNoCache && clientWantsRevalidation(directives, decision.entry, now)) {
          const result = await this.fill(fill("foreground", true));
          return this.answer(request, result, "request", decision.entry, primary);
        }
        const entry = decision.entry;
        if (decision.kind === "stale-while-revalidate") {
          this.count("stale", primary);
          this.o.background(this.refresh(fill("background")));
          return answerFromEntry(entry, { hit: true, detail: "stale-while-revalidate" }, ask(request), now);
        }
        this.count(entry.negative ? "negative" : "hit", primary);
        return answerFromEntry(
          entry,
          { hit: true, ...(entry.negative ? { detail: "negative" } : {}) },
          ask(request),
          now,
        );
      }
      case "revalidate":
      case "miss": {
        const fwd = decision.kind === "revalidate" ? "stale" : found.varyMiss ? "vary-miss" : "uri-miss";
        // Without a copy here, the coordinator's own copy must not answer a no-cache the route honours either.
        const validated = route.honorRequestNoCache && (directives.noCache || directives.maxAgeMs === 0);
        const result = await this.fill(fill("foreground", validated));
        return this.answer(request, result, fwd, decision.kind === "revalidate" ? decision.entry : undefined, primary);
      }
    }
  }

  /** Asks the coordinator, falling back to local single-flight when it is unreachable. */
  private async fill(fill: FillRequest): Promise<FillResult> {
    try {
      return await this.o.coordinator.fill(fill);
    } catch (error) {
      this.o.onDegraded?.(error);
      if (!this.o.fallback) return failed(error);
      try {
        return await this.o.fallback.fill(fill);
      } catch (fallbackError) {
        return failed(fallbackError);
      }
    }
  }

  /** One background refresh per key per edge; the fresher entry lands in the near tier. */
  private async refresh(fill: FillRequest): Promise<void> {
    const marks = this.o.refreshMarks;
    if (marks && !marks.begin(fill.key, this.o.clock.now())) return;
    try {
      await this.refreshes.run(fill.key, async () => {
        const result = discardStream(await this.fill(fill));
        if (result.kind === "entry") await this.keep(result.entry, fill.primary);
      });
    } catch {
      // A failed refresh leaves the stale copy in place; the next request past it tries again.
    } finally {
      marks?.end(fill.key);
    }
  }

  private async answer(
    request: EngineRequest,
    result: FillResult,
    fwd: CacheStatus["fwd"],
    nearStale: Entry | undefined,
    primary: string,
  ): Promise<EngineResponse> {
    const now = this.o.clock.now();
    // A cached error (another edge's or process's failed fetch) never hides this edge's own
    // good copy: answer as the failure it stands for, so stale-if-error can apply.
    if (result.kind === "entry" && result.entry.negative && servableOnError(nearStale, this.o.config, now)) {
      const { entry } = result;
      const response = { status: entry.status, headers: entry.headers, body: entry.body };
      result = {
        kind: "failed",
        code: "ORIGIN_STATUS",
        message: `origin answered ${entry.status}`,
        fwdStatus: entry.status,
        response,
        collapsed: result.collapsed,
      };
    }
    switch (result.kind) {
      case "entry": {
        await this.keep(result.entry, primary);
        const entry = result.entry;
        const stale = now >= entry.staleAt;
        this.count(entry.negative ? "negative" : result.collapsed ? "collapsed" : stale ? "stale" : "miss", primary);
        const status: CacheStatus = {
          fwd,
          fwdStatus: result.fwdStatus ?? entry.status,
          stored: result.stored,
          collapsed: result.collapsed,
        };
        if (entry.negative) status.detail = "negative";
        else if (stale) status.detail = "stale-while-revalidate";
        return answerFromEntry(entry, status, ask(request), now);
      }
      case "stream": {
        // The body is on its way from the one fetch of this key; the coordinator stores it.
        this.count(result.collapsed ? "collapsed" : "miss", primary);
        const status: CacheStatus = { fwd, fwdStatus: result.fwdStatus, collapsed: result.collapsed };
        if (result.size === "fits") status.stored = true;
        if (result.size === "too-large") status.detail = "too-large";
        const body = request.method === "HEAD" ? result.body : this.copiedToNear(result, primary);
        return fromStream(result.head, body, result.bytes, status, request.method, now);
      }
      case "pass":
        this.count("pass", primary);
        // The origin's answer replaced what this edge holds (a 304 that made it private, say).
        if (nearStale) await this.o.near.delete(nearStale.key).catch(() => false);
        return fromPass(
          this.shown(result.response),
          { fwd, fwdStatus: result.fwdStatus, detail: result.reason },
          request.method,
        );
      case "alone":
        return this.relay(request, { fwd, detail: "uncacheable" }, "pass");
      case "failed": {
        const best = newest(...[result.stale, nearStale].filter((entry) => servableOnError(entry, this.o.config, now)));
        const verdict = decideOnFailure(best, result.code, this.o.config, now);
        const detail = FAILURE_DETAIL[result.code] ?? "origin-error";
        if (verdict.kind === "stale-if-error") {
          this.count("stale-if-error", primary);
          const served: CacheStatus = { fwd: "stale", detail: detail === "origin-error" ? "stale-if-error" : detail };
          if (result.fwdStatus) served.fwdStatus = result.fwdStatus;
          return answerFromEntry(verdict.entry, served, ask(request), now);
        }
        return this.failure(request, result, fwd, detail, primary);
      }
    }
  }

  private failure(
    request: EngineRequest,
    result: Extract<FillResult, { kind: "failed" }>,
    fwd: CacheStatus["fwd"],
    detail: NonNullable<CacheStatus["detail"]>,
    primary: string,
  ): EngineResponse {
    const status: CacheStatus = { fwd, detail, ...(result.fwdStatus ? { fwdStatus: result.fwdStatus } : {}) };
    if (result.response) {
      this.count("error", primary);
      return fromPass(this.shown(result.response), status, request.method);
    }
    const refused = isGuardRefusal(result.code);
    this.count(refused ? "refused" : "error", primary);
    if (refused)
      return synthetic(503, `origin is protected (${detail}); try again shortly`, status, result.retryAfterMs ?? 1_000);
    const code = result.code === "ORIGIN_TIMEOUT" ? 504 : result.code === "COORDINATOR_UNAVAILABLE" ? 503 : 502;
    return synthetic(code, `origin failed: ${result.message}`, status, code === 503 ? 1_000 : undefined);
  }

  /**
   * The body as it streams to the client, copied into the near tier once it arrived whole
   * (the stream closes only then; a failed body is never kept). One copy per entry at a
   * time: other readers of the same entry pass through untouched.
   */
  private copiedToNear(result: Extract<FillResult, { kind: "stream" }>, primary: string): ReadableStream<Uint8Array> {
    const { head } = result;
    const id = `${head.token} ${head.key}`;
    if (result.size === "too-large" || this.nearCopies.has(id)) return result.body;
    this.nearCopies.add(id);
    const limit = this.o.config.cache.maxEntryBytes;
    const reader = result.body.getReader();
    let chunks: Uint8Array[] | undefined = [];
    let total = 0;
    const stop = () => {
      this.nearCopies.delete(id);
      chunks = undefined;
    };
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          let read: ReadableStreamReadResult<Uint8Array>;
          try {
            read = await reader.read();
          } catch (error) {
            stop();
            controller.error(error);
            return;
          }
          if (read.done) {
            const kept = chunks;
            stop();
            controller.close();
            if (kept) this.o.background(this.keep({ ...head, body: concatBytes(kept, total) }, primary));
            return;
          }
          total += read.value.byteLength;
          if (total > limit) chunks = undefined;
          chunks?.push(read.value);
          controller.enqueue(read.value);
        },
        cancel: (reason) => {
          stop();
          return reader.cancel(reason);
        },
      },
      { highWaterMark: 0 },
    );
  }

  /**
   * Writes an entry the coordinator gave us into the near tier, with its Vary pointer. A
   * cached error never replaces a copy that may still be served stale: it would turn every
   * later hit into the error (a background refresh brings cached errors here too).
   */
  private async keep(entry: Entry, primary: string): Promise<void> {
    if (entry.negative) {
      const held = await this.o.near.get(entry.key).catch(() => undefined);
      if (servableOnError(held, this.o.config, this.o.clock.now())) return;
    }
    const written = await this.o.near.put(entry).catch(() => false);
    if (written && entry.key !== primary) await this.o.near.put(varyPointer(entry, primary)).catch(() => false);
  }

  private fillRequest(
    request: EngineRequest,
    route: RoutePolicy,
    primary: string,
    key: string,
    priority: FillRequest["priority"],
    purges: PurgeSnapshot | undefined,
    revalidate: boolean,
    authorized = false,
  ): FillRequest {
    // Every end-to-end header the client sent, so the origin's answer (and the variant its
    // Vary selects) is the one this request asked for; credentials only where the route caches
    // them, or (RFC 9111 §3.5) a request's own Authorization on its own fill (`authorized`,
    // never with a Cookie: decide() relays those), whose answer storability then judges.
    const headers = originRequestHeaders(request.rawHeaders, this.forward, {
      kind: "fill",
      credentials: route.cacheAuthorized || authorized,
      url: request.url,
      clientAddress: request.clientAddress,
    });
    return {
      primary,
      key,
      // The key's query, never the client's: a parameter left out of the key cannot shape what is stored.
      url: this.originUrl(request.url, keyQuery(request.url, route.key)),
      path: request.url.pathname,
      headers,
      priority,
      ...(purges ? { purges } : {}),
      ...(revalidate ? { revalidate } : {}),
    };
  }

  /** The origin URL for the client's path and `query` (the key's for fills, the client's for relays). */
  private originUrl(url: URL, query: string): string {
    const origin = new URL(this.o.config.origin.url);
    const base = origin.pathname.endsWith("/") ? origin.pathname.slice(0, -1) : origin.pathname;
    return `${origin.protocol}//${origin.host}${base}${url.pathname}${query}`;
  }

  /** An origin answer as clients see it: the purge-tag headers herdless consumes are not shown unless configured. */
  private shown(response: PassResponse): PassResponse {
    if (this.o.config.cache.exposeTagHeaders) return response;
    return { ...response, headers: response.headers.filter(([name]) => !TAG_HEADERS.has(name)) };
  }

  /**
   * RFC 9111 §4.4: relay an unsafe request, then, if it succeeded, invalidate its URL and the
   * same-origin Location / Content-Location: here, and at each URL's coordinator, which
   * would otherwise keep serving the old copy to every edge.
   */
  private async unsafe(request: EngineRequest): Promise<EngineResponse> {
    const response = await this.relay(request, { fwd: "method" }, "bypass");
    const urls = invalidatedUrls(request.method, request.url, response.status, response.headers);
    await Promise.all(
      urls.map((url) => this.invalidate(primaryKey(url, routeFor(this.o.config, url.pathname).key), request)),
    );
    return response;
  }

  private async invalidate(primary: string, request: EngineRequest): Promise<void> {
    const pointer = await this.o.near.get(primary).catch(() => undefined);
    await this.o.near.delete(primary).catch(() => false);
    if (pointer && pointer.vary.length > 0)
      await this.o.near.delete(variantKey(primary, pointer.vary, request.headers)).catch(() => false);
    try {
      await this.o.coordinator.invalidate?.(primary, request.rawHeaders);
    } catch (error) {
      // The coordinator's copy expires on its own; the client's write has already succeeded.
      this.o.onDegraded?.(error);
    }
  }

  /** Relays a request as it is, through the guard, streaming the answer. */
  private async relay(request: EngineRequest, status: CacheStatus, kind: "bypass" | "pass"): Promise<EngineResponse> {
    this.count(kind, undefined);
    // Nothing from this request is stored: the client's own query and credentials go as they are.
    const headers = originRequestHeaders(request.rawHeaders, this.forward, {
      kind: "relay",
      credentials: true,
      url: request.url,
      clientAddress: request.clientAddress,
    });
    const url = this.originUrl(request.url, request.url.search);
    const result = await guardedOriginCall(
      this.originDeps,
      {
        url,
        method: request.method,
        headers,
        body: request.method === "GET" || request.method === "HEAD" ? null : (request.body ?? null),
      },
      // The URL stands for the key: the breaker counts how many distinct resources fail.
      { priority: "foreground", maxBodyBytes: 0, key: `${request.method} ${url}` },
    );
    if (result.kind === "response")
      return fromPass(this.shown(result.response), { ...status, fwdStatus: result.response.status }, request.method);
    const { error } = result;
    if (result.kind === "refused") {
      return synthetic(
        503,
        `origin is protected (${error.code}); try again shortly`,
        { ...status, detail: FAILURE_DETAIL[error.code] ?? "origin-error" },
        error.retryAfterMs ?? 1_000,
      );
    }
    return synthetic(error.code === "ORIGIN_TIMEOUT" ? 504 : 502, `origin failed: ${error.message}`, {
      ...status,
      detail: "origin-error",
    });
  }

  private count(kind: Parameters<Metrics["count"]>[0], key: string | undefined): void {
    this.o.metrics?.count(kind, key);
  }
}

const FAILURE_DETAIL: Partial<Record<HerdlessErrorCode, NonNullable<CacheStatus["detail"]>>> = {
  BREAKER_OPEN: "breaker-open",
  QUEUE_FULL: "queue-full",
  QUEUE_TIMEOUT: "queue-timeout",
  ORIGIN_BACKOFF: "backoff",
  COORDINATOR_UNAVAILABLE: "coordinator-unavailable",
};

/** Methods answered here and never forwarded: TRACE (RFC 9110 §9.3.8) and its Microsoft twin TRACK. */
const LOCAL_ONLY_METHODS = new Set(["TRACE", "TRACK"]);

function notAllowed(method: string): EngineResponse {
  const answer = synthetic(405, `${method} is not allowed through this cache`, {});
  answer.headers.push(["allow", "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE"]);
  return answer;
}

function ask(request: EngineRequest): ClientAsk {
  return { method: request.method, headers: request.headers };
}

function newest(...entries: Entry[]): Entry | undefined {
  return entries.reduce<Entry | undefined>(
    (best, entry) => (best && best.storedAt >= entry.storedAt ? best : entry),
    undefined,
  );
}

function failed(error: unknown): FillResult {
  const code: HerdlessErrorCode = isHerdlessError(error) ? error.code : "COORDINATOR_UNAVAILABLE";
  return { kind: "failed", code, message: error instanceof Error ? error.message : String(error), collapsed: false };
}
