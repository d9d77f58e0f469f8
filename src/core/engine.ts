import type { CacheStatus } from "./http/cache-status.ts";
import type { Clock } from "./clock.ts";
import { routeFor, type Config, type RoutePolicy } from "./config.ts";
import type { Coordinator, FillRequest, FillResult } from "./fill/coordinator.ts";
import { decide, decideOnFailure, isUnsafeMethod, servableOnError, type RequestFacts } from "./http/decision.ts";
import type { Entry } from "./http/entry.ts";
import { isHerdlessError, type HerdlessErrorCode } from "./errors.ts";
import { HOP_BY_HOP, type HeaderReader } from "./http/http.ts";
import { primaryKey } from "./http/key.ts";
import { lookup } from "./store/lookup.ts";
import type { Metrics } from "./admin/metrics.ts";
import { fetchOrigin, type FetchLike } from "./origin/origin-client.ts";
import type { OriginGuard } from "./guard/origin-guard.ts";
import { applyPurge, type PurgeSnapshot } from "./admin/purge.ts";
import { fromEntry, fromPass, synthetic, type EngineResponse } from "./http/respond.ts";
import { varyPointer } from "./http/response-entry.ts";
import { SingleFlight } from "./fill/single-flight.ts";
import type { Store } from "./store/store.ts";

export interface EngineRequest {
  method: string;
  /** The URL the client asked for. */
  url: URL;
  headers: HeaderReader;
  /** Every request header, for requests relayed as they are (bypass, unsafe methods). */
  rawHeaders: [string, string][];
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
}

/** Request headers worth forwarding on a cache fill; anything else could personalize a shared answer. */
const FILL_HEADERS = ["accept", "accept-language", "user-agent"];

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
  constructor(private readonly o: EngineOptions) {}

  async handle(request: EngineRequest): Promise<EngineResponse> {
    const route = routeFor(this.o.config, request.url.pathname);
    const facts: RequestFacts = {
      method: request.method,
      hasAuthorization: request.headers.get("authorization") !== null,
      hasCookie: request.headers.get("cookie") !== null,
    };
    const primary = primaryKey(request.url, route.key);
    if (facts.method !== "GET" && facts.method !== "HEAD") return this.unsafe(request, primary);
    const found = await lookup(this.o.near, primary, primary, request.headers);
    const purges = this.o.purges ? await this.o.purges() : undefined;
    if (purges) found.entry = applyPurge(found.entry, primary, purges);
    const decision = decide(found.entry, found.key, facts, route, this.o.clock.now());
    switch (decision.kind) {
      case "bypass":
        return this.relay(request, { fwd: "bypass" }, "bypass");
      case "fresh":
        this.count(decision.entry.negative ? "negative" : "hit", primary);
        return fromEntry(
          decision.entry,
          { hit: true, ...(decision.entry.negative ? { detail: "negative" } : {}) },
          request.method,
          this.o.clock.now(),
        );
      case "stale-while-revalidate":
        this.count("stale", primary);
        this.o.background(this.refresh(this.fillRequest(request, route, primary, found.key, "background", purges)));
        return fromEntry(
          decision.entry,
          { hit: true, detail: "stale-while-revalidate" },
          request.method,
          this.o.clock.now(),
        );
      case "revalidate":
      case "miss": {
        const fwd = decision.kind === "revalidate" ? "stale" : found.varyMiss ? "vary-miss" : "uri-miss";
        const result = await this.fill(this.fillRequest(request, route, primary, found.key, "foreground", purges));
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
    await this.refreshes
      .run(fill.key, async () => {
        const result = await this.fill(fill);
        if (result.kind === "entry") await this.keep(result.entry, fill.primary);
      })
      .catch(() => undefined);
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
        return fromEntry(entry, status, request.method, now);
      }
      case "pass":
        this.count("pass", primary);
        return fromPass(result.response, { fwd, fwdStatus: result.fwdStatus, detail: result.reason }, request.method);
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
          return fromEntry(verdict.entry, served, request.method, now);
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
      return fromPass(result.response, status, request.method);
    }
    const refused = result.code === "BREAKER_OPEN" || result.code === "QUEUE_FULL" || result.code === "QUEUE_TIMEOUT";
    this.count(refused ? "refused" : "error", primary);
    if (refused)
      return synthetic(503, `origin is protected (${detail}); try again shortly`, status, result.retryAfterMs ?? 1_000);
    const code = result.code === "ORIGIN_TIMEOUT" ? 504 : result.code === "COORDINATOR_UNAVAILABLE" ? 503 : 502;
    return synthetic(code, `origin failed: ${result.message}`, status, code === 503 ? 1_000 : undefined);
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
  ): FillRequest {
    const names = new Set(FILL_HEADERS);
    if (route.cacheAuthorized) ["authorization", "cookie"].forEach((n) => names.add(n));
    const headers: [string, string][] = [];
    for (const name of names) {
      const value = request.headers.get(name);
      if (value !== null) headers.push([name, value]);
    }
    // Headers that select a known variant must reach the origin, or it cannot pick it.
    for (const [name, value] of request.rawHeaders)
      if (!names.has(name) && key.includes(`|${name}=`)) headers.push([name, value]);
    return {
      primary,
      key,
      url: this.originUrl(request.url),
      path: request.url.pathname,
      headers,
      priority,
      ...(purges ? { purges } : {}),
    };
  }

  private originUrl(url: URL): string {
    const origin = new URL(this.o.config.origin.url);
    const base = origin.pathname.endsWith("/") ? origin.pathname.slice(0, -1) : origin.pathname;
    return `${origin.protocol}//${origin.host}${base}${url.pathname}${url.search}`;
  }

  /** RFC 9111 §4.4: relay an unsafe request, then invalidate the URL if it succeeded. */
  private async unsafe(request: EngineRequest, primary: string): Promise<EngineResponse> {
    const response = await this.relay(request, { fwd: "method" }, "bypass");
    if (isUnsafeMethod(request.method) && response.status < 400) await this.o.near.delete(primary).catch(() => false);
    return response;
  }

  /** Relays a request as it is, through the guard, streaming the answer. */
  private async relay(request: EngineRequest, status: CacheStatus, kind: "bypass" | "pass"): Promise<EngineResponse> {
    this.count(kind, undefined);
    let permit;
    try {
      permit = await this.o.guard.acquire("foreground");
    } catch (error) {
      const code: HerdlessErrorCode = isHerdlessError(error) ? error.code : "ORIGIN_NETWORK";
      return synthetic(
        503,
        `origin is protected (${code}); try again shortly`,
        { ...status, detail: FAILURE_DETAIL[code] ?? "origin-error" },
        isHerdlessError(error) ? error.retryAfterMs : 1_000,
      );
    }
    const headers = request.rawHeaders.filter(([name]) => !HOP_BY_HOP.has(name) && name !== "host");
    try {
      const res = await fetchOrigin(
        this.o.fetch,
        {
          url: this.originUrl(request.url),
          method: request.method,
          headers,
          body: request.method === "GET" || request.method === "HEAD" ? null : (request.body ?? null),
        },
        { timeoutMs: this.o.config.origin.timeoutMs, maxBodyBytes: 0, clock: this.o.clock },
      );
      await permit.release(res.status >= 500 ? "failure" : "success");
      this.o.metrics?.originCall(
        res.status >= 500 ? "5xx" : res.status === 200 ? "200" : res.status === 304 ? "304" : "other",
      );
      return fromPass(res, { ...status, fwdStatus: res.status }, request.method);
    } catch (error) {
      await permit.release("failure");
      this.o.metrics?.originCall("error");
      const message = error instanceof Error ? error.message : String(error);
      return synthetic(isHerdlessError(error, "ORIGIN_TIMEOUT") ? 504 : 502, `origin failed: ${message}`, {
        ...status,
        detail: "origin-error",
      });
    }
  }

  private count(kind: Parameters<Metrics["count"]>[0], key: string | undefined): void {
    this.o.metrics?.count(kind, key);
  }
}

const FAILURE_DETAIL: Partial<Record<HerdlessErrorCode, NonNullable<CacheStatus["detail"]>>> = {
  BREAKER_OPEN: "breaker-open",
  QUEUE_FULL: "queue-full",
  QUEUE_TIMEOUT: "queue-timeout",
  COORDINATOR_UNAVAILABLE: "coordinator-unavailable",
};

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
