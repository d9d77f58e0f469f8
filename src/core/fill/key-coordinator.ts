import type { Clock } from "../clock.ts";
import { routeFor, type Config } from "../config.ts";
import type { Coordinator, FillRequest, FillResult } from "./coordinator.ts";
import type { Entry } from "../http/entry.ts";
import { HerdlessError, isHerdlessError, type HerdlessErrorCode } from "../errors.ts";
import { storability, type Storability } from "../http/freshness.ts";
import { decideOnFailure } from "../http/decision.ts";
import { headerList } from "../http/http.ts";
import { variantKey } from "../http/key.ts";
import type { LeaseManager } from "./lease.ts";
import type { ContentDecoding, FetchLike, OriginResponse } from "../origin/origin-client.ts";
import { guardedOriginCall, type GuardedCallDeps, type OriginCallEvent } from "../origin/guarded-call.ts";
import type { OriginGuard } from "../guard/origin-guard.ts";
import {
  conditionalHeaders,
  entryFromResponse,
  negativeEntry,
  refreshedEntry,
  revalidatedHeaders,
  varyPointer,
} from "../http/response-entry.ts";
import { SingleFlight } from "./single-flight.ts";
import type { Store } from "../store/store.ts";
import { lookup } from "../store/lookup.ts";
import { applyPurge } from "../admin/purge.ts";

export interface KeyCoordinatorOptions {
  config: Config;
  clock: Clock;
  /** The authoritative store for the keys this filler serves (DO storage, Redis, or the process LRU). */
  store: Store;
  leases: LeaseManager;
  guard: OriginGuard;
  fetch: FetchLike;
  /** Which Content-Encodings `fetch` decodes (the runtime's rule); undici's by default. */
  decodes?: ContentDecoding;
  /** Resolves with the announcement when another process's flight for `key` ends, or undefined after `timeoutMs`. */
  waitForFill?: (key: string, timeoutMs: number) => Promise<string | undefined>;
  /** Tells other processes that the flight for `key` ended: `done`, or `failed:<code>`. */
  announceFill?: (key: string, message: string) => void | Promise<void>;
  /** Keeps background work alive (ctx.waitUntil on Workers). */
  background?: (work: Promise<unknown>) => void;
  /** Observes each origin call, for metrics. */
  onOriginCall?: (event: OriginCallEvent) => void;
}

/** Result of the one flight per key; `alone` is decided per caller afterwards. */
type FlightResult = Exclude<FillResult, { kind: "alone" }>;

/**
 * The coordinator logic, the same in every runtime: answer from the store when it holds
 * something fresh, otherwise collapse every concurrent caller onto one origin request made
 * under the key's lease, through the origin guard. Runtimes supply the store, the leases
 * and, across processes, the fill announcements.
 *
 * @example
 * const filler = new KeyCoordinator({ config, clock, store, leases, guard, fetch });
 * const result = await filler.fill({ primary, key, url, path: "/", headers: [], priority: "foreground" });
 */
export class KeyCoordinator implements Coordinator {
  private readonly flights = new SingleFlight<string, FlightResult>();
  private readonly originDeps: GuardedCallDeps;
  constructor(private readonly o: KeyCoordinatorOptions) {
    this.originDeps = {
      config: o.config,
      clock: o.clock,
      guard: o.guard,
      fetch: o.fetch,
      ...(o.decodes ? { decodes: o.decodes } : {}),
      ...(o.onOriginCall ? { onOriginCall: o.onOriginCall } : {}),
    };
  }

  async fill(request: FillRequest): Promise<FillResult> {
    const stored = request.revalidate ? undefined : await this.storedFor(request);
    // After the lookup: a soft purge makes the entry stale as of the time it was applied.
    const now = this.o.clock.now();
    if (stored && !stored.negative && now < stored.staleAt)
      return { kind: "entry", entry: stored, collapsed: false, stored: false };
    if (stored?.negative && now < stored.staleAt)
      return { kind: "entry", entry: stored, collapsed: false, stored: false };
    if (stored && request.priority === "foreground" && !stored.mustRevalidate && now < stored.swrUntil) {
      // A caller without a copy of its own gets the stale one at once; the refresh runs behind it.
      this.inBackground(this.fill({ ...request, key: stored.key, priority: "background" }));
      return { kind: "entry", entry: stored, collapsed: false, stored: false };
    }
    const { value, joined } = await this.flights.run(request.key, () => this.fetchUnderLease(request));
    if (!joined) return value;
    if (value.kind === "pass") return { kind: "alone" };
    if (value.kind === "failed") return { ...value, collapsed: true };
    // The leader discovered a Vary this caller selects differently on: fill its own variant.
    const mine = variantKey(request.primary, value.entry.vary, headerList(request.headers));
    if (mine !== value.entry.key && request.key !== mine) return this.fill({ ...request, key: mine });
    return { ...value, collapsed: true };
  }

  async invalidate(primary: string, headers: [string, string][]): Promise<void> {
    const { key, entry } = await lookup(this.o.store, primary, primary, headerList(headers));
    await this.o.store.delete(primary);
    if (entry && key !== primary) await this.o.store.delete(key);
  }

  private async storedFor(request: FillRequest): Promise<Entry | undefined> {
    const { entry } = await lookup(this.o.store, request.primary, request.key, headerList(request.headers));
    return request.purges ? applyPurge(entry, request.primary, request.purges) : entry;
  }

  private inBackground(work: Promise<unknown>): void {
    const settled = work.catch(() => undefined);
    if (this.o.background) this.o.background(settled);
  }

  /**
   * Takes the key's lease (waiting out another holder), then fetches. Whatever the flight
   * ends with, other processes waiting on the key hear it when the lease is released: a
   * fill sends them to the store, a failure hands them the same failure (they serve their
   * stale copy) instead of a second origin request.
   */
  private async fetchUnderLease(request: FillRequest): Promise<FlightResult> {
    const { lockLeaseMs, waitTimeoutMs } = this.o.config.coordinator;
    const before = await this.storedFor(request);
    const giveUpAt = this.o.clock.now() + waitTimeoutMs;
    for (;;) {
      const lease = await this.o.leases.acquire(request.key, lockLeaseMs);
      if (lease) {
        // The right to write ends with the lease: an origin call still running then is cancelled.
        const expiry = new AbortController();
        const timer = setTimeout(
          () =>
            expiry.abort(new HerdlessError("LEASE_LOST", `lease on ${request.key} expired after ${lockLeaseMs} ms`)),
          lockLeaseMs,
        );
        let result: FlightResult | undefined;
        try {
          // Someone may have filled the key while we queued for the lease, or before we first looked.
          const current = await this.storedFor(request);
          // A client asking for validation accepts only an entry fetched since it arrived.
          const acceptable = !request.revalidate || newer(current, before);
          if (this.usable(current) && acceptable)
            return (result = { kind: "entry", entry: current, collapsed: true, stored: false });
          return (result = await this.fetchAndStore(request, current, lease.token, expiry.signal));
        } finally {
          clearTimeout(timer);
          await this.o.leases.release(lease).catch(() => false);
          await Promise.resolve(
            this.o.announceFill?.(request.key, result?.kind === "failed" ? `failed:${result.code}` : "done"),
          ).catch(() => undefined);
        }
      }
      // Another process holds the lease: wait for its announcement, then look again.
      const remaining = giveUpAt - this.o.clock.now();
      if (remaining <= 0) {
        return {
          kind: "failed",
          code: "COORDINATOR_UNAVAILABLE",
          message: `lease on ${request.key} stayed busy for ${waitTimeoutMs} ms`,
          stale: before,
          collapsed: true,
        };
      }
      const message = await (this.o.waitForFill?.(request.key, Math.min(remaining, lockLeaseMs)) ??
        delay(Math.min(remaining, 50)));
      const filled = await this.storedFor(request);
      if (this.usable(filled)) return { kind: "entry", entry: filled, collapsed: true, stored: false };
      if (typeof message === "string" && message.startsWith("failed:")) {
        const code = message.slice("failed:".length) as HerdlessErrorCode;
        return {
          kind: "failed",
          code,
          message: `another process's fetch of ${request.key} failed (${code})`,
          stale: before,
          collapsed: true,
        };
      }
    }
  }

  /** An entry that answers without an origin request: fresh (a cached error counts, briefly). */
  private usable(entry: Entry | undefined): entry is Entry {
    return entry !== undefined && this.o.clock.now() < entry.staleAt;
  }

  private async fetchAndStore(
    request: FillRequest,
    stored: Entry | undefined,
    token: number,
    signal: AbortSignal,
  ): Promise<FlightResult> {
    const conditional = request.key === stored?.key ? conditionalHeaders(stored) : [];
    const result = await guardedOriginCall(
      this.originDeps,
      {
        url: request.url,
        method: "GET",
        headers: [...request.headers, ...conditional],
      },
      { priority: request.priority, maxBodyBytes: this.o.config.cache.maxEntryBytes, key: request.key, signal },
    );
    if (result.kind !== "response") return this.failure(result.error, stored);
    return this.settle(request, stored, result.response, token);
  }

  /**
   * What one origin answer becomes. Every stored entry comes from a response judged by
   * `storability` (RFC 9111 §3): a 200, a 5xx with explicit freshness, and the response a
   * 304 makes of the stored one (§4.3.4), so a 304 cannot slip a Set-Cookie, `private`,
   * `no-store` or `Vary: *` into what later clients get.
   */
  private async settle(
    request: FillRequest,
    stored: Entry | undefined,
    res: OriginResponse,
    token: number,
  ): Promise<FlightResult> {
    const { config, clock } = this.o;
    const route = routeFor(config, request.path);
    const requestHeaders = headerList(request.headers);
    const context = { primary: request.primary, url: request.url, requestHeaders, route, config, token };
    const judge = (status: number, headers: [string, string][]): Storability =>
      storability(
        "GET",
        requestHeaders.get("authorization") !== null,
        requestHeaders.get("cookie") !== null,
        {
          status,
          headers: headerList(headers),
          requestAt: res.requestAt,
          responseAt: res.responseAt,
          droppedFields: res.droppedFields,
        },
        route,
      );
    if (res.status === 304 && stored && res.kind === "buffered") {
      const merged = revalidatedHeaders(stored, res.headers);
      const refreshed = judge(stored.status, merged);
      if (refreshed.storable) return this.put(refreshedEntry(stored, res, context), request.primary, res.status);
      // The origin now says this response must not be shared: forget it, answer this client alone.
      if (saysAboutTheUrl(refreshed)) await this.o.store.delete(stored.key);
      return {
        kind: "pass",
        response: { status: stored.status, headers: merged, body: stored.body },
        fwdStatus: res.status,
        reason: "uncacheable",
      };
    }
    const verdict = judge(res.status, res.headers);
    if (res.status >= 500 && !(verdict.storable && res.kind === "buffered" && !this.hidesError(stored))) {
      const body = res.kind === "buffered" ? res.body : new Uint8Array(0);
      if (res.kind === "streamed") await res.body?.cancel().catch(() => undefined);
      const response = { status: res.status, headers: res.headers, body };
      if (!stored && config.origin.errorTtlMs > 0) {
        await this.o.store.put(
          negativeEntry(request.key, request.url, response, config.origin.errorTtlMs, clock.now(), token),
        );
      }
      // RFC 9111 §4.2.2: without explicit freshness the error is no one else's: it goes to the
      // callers that waited on this fetch and to nobody after it (unless the operator opts in above).
      return {
        kind: "failed",
        code: "ORIGIN_STATUS",
        message: `origin answered ${res.status}`,
        fwdStatus: res.status,
        stale: stored,
        response,
        collapsed: false,
      };
    }
    if (res.kind === "streamed" || !verdict.storable || res.status === 304) {
      // The stored copy no longer reflects what the origin says about this URL.
      if (stored && res.kind === "buffered" && res.status !== 304 && saysAboutTheUrl(verdict))
        await this.o.store.delete(stored.key);
      const reason = res.kind === "streamed" ? "too-large" : "uncacheable";
      return {
        kind: "pass",
        response: { status: res.status, headers: res.headers, body: res.body },
        fwdStatus: res.status,
        reason,
      };
    }
    let entry = entryFromResponse(res, context);
    if (entry.status === 404 && config.origin.notFoundTtlMs > 0 && entry.staleAt <= clock.now()) {
      const staleAt = clock.now() + config.origin.notFoundTtlMs;
      entry = {
        ...entry,
        staleAt,
        swrUntil: staleAt,
        sieUntil: staleAt,
        deleteAt: staleAt + config.cache.retainStaleMs,
      };
    }
    return this.put(entry, request.primary, res.status);
  }

  /** RFC 5861 §4: a stored copy that may stand in for an error answer keeps doing so over a 5xx. */
  private hidesError(stored: Entry | undefined): boolean {
    return decideOnFailure(stored, "ORIGIN_STATUS", this.o.config, this.o.clock.now()).kind === "stale-if-error";
  }

  private async put(entry: Entry, primary: string, fwdStatus: number): Promise<FlightResult> {
    const written = await this.o.store.put(entry);
    if (written && entry.key !== primary) await this.o.store.put(varyPointer(entry, primary));
    // A newer entry won the race (fencing): serve that one.
    const winner = written ? entry : ((await this.o.store.get(entry.key)) ?? entry);
    return { kind: "entry", entry: winner, fwdStatus, collapsed: false, stored: written };
  }

  private failure(error: unknown, stale: Entry | undefined): FlightResult {
    if (isHerdlessError(error)) {
      return {
        kind: "failed",
        code: error.code,
        message: error.message,
        retryAfterMs: error.retryAfterMs,
        stale,
        collapsed: false,
      };
    }
    const wrapped = new HerdlessError("ORIGIN_NETWORK", String(error));
    return { kind: "failed", code: wrapped.code, message: wrapped.message, stale, collapsed: false };
  }
}

/**
 * An unstorable answer replaces the stored copy, unless it is unstorable only because of who
 * asked (RFC 9111 §3.5: the answer to a request with credentials), which says nothing about
 * the copy others get.
 */
function saysAboutTheUrl(verdict: Storability): boolean {
  return verdict.storable || verdict.reason !== "authorization";
}

/** Whether `entry` was written after `than` (a later flight), by fencing token then arrival. */
function newer(entry: Entry | undefined, than: Entry | undefined): boolean {
  if (!entry) return false;
  if (!than) return true;
  return entry.token > than.token || entry.storedAt > than.storedAt;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
