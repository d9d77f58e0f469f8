import type { Clock } from "../clock.ts";
import { routeFor, type Config } from "../config.ts";
import { discardStream, type Coordinator, type FillRequest, type FillResult } from "./coordinator.ts";
import type { Entry } from "../http/entry.ts";
import { HerdlessError, isHerdlessError, type HerdlessErrorCode } from "../errors.ts";
import { storability, type Storability } from "../http/freshness.ts";
import { decideOnFailure } from "../http/decision.ts";
import { concatBytes, headerList } from "../http/http.ts";
import { variantKey } from "../http/key.ts";
import type { Lease, LeaseManager } from "./lease.ts";
import type { ContentDecoding, FetchLike, OriginResponse, StreamedOriginResponse } from "../origin/origin-client.ts";
import {
  guardedCallDeps,
  guardedOriginCall,
  type GuardedCallDeps,
  type OriginCallEvent,
} from "../origin/guarded-call.ts";
import type { OriginGuard } from "../guard/origin-guard.ts";
import {
  conditionalHeaders,
  entryFromResponse,
  negativeEntry,
  refreshedEntry,
  revalidatedHeaders,
  varyPointer,
} from "../http/response-entry.ts";
import { SharedBody } from "./shared-body.ts";
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
  /** Hears each entry this coordinator wrote to its store once a streamed body completed. */
  onStored?: (entry: Entry) => void;
}

/**
 * A flight whose body is still arriving: every caller reads its own stream of `shared`.
 * The lease stays held until the body ended and was stored (`done`).
 */
interface SharedFlight {
  kind: "shared";
  head: Omit<Entry, "body">;
  shared: SharedBody;
  /** The leader's stream, taken before the body could pass `keepBytes` without a reader. */
  first: ReadableStream<Uint8Array> | undefined;
  bytes: number | undefined;
  size: Extract<FillResult, { kind: "stream" }>["size"];
  fwdStatus: number;
  /** Settles once the body ended, the entry was stored (if it could be) and the lease released. */
  done: Promise<void>;
}

/** Bodies up to this size are read whole before the callers are answered (see bufferedUpTo). */
const SMALL_BODY_BYTES = 64 * 1024;

/** Result of the one flight per key; `alone` and each caller's stream are decided per caller afterwards. */
type FlightResult = Exclude<FillResult, { kind: "alone" | "stream" }> | SharedFlight;

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
  /**
   * Flights past their response head whose body is still arriving, by request key: a caller
   * that comes now still gets the whole body (the kept prefix, then the rest) rather than
   * waiting for the stored entry. Left once the body ended or passed `cache.maxEntryBytes`.
   */
  private readonly streaming = new Map<string, SharedFlight>();
  constructor(private readonly o: KeyCoordinatorOptions) {
    this.originDeps = guardedCallDeps(o, o.onOriginCall);
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
    const streaming = this.streaming.get(request.key);
    if (streaming) {
      const joined = await this.join(request, streaming, true);
      if (joined) return joined;
    }
    const { value, joined } = await this.flights.run(request.key, () => this.fetchUnderLease(request));
    if (value.kind === "shared") {
      const mine = await this.join(request, value, joined);
      if (mine) return mine;
      // Too late for the start of a body too large to keep: once that fetch ended, ask again
      // (one origin request after another, never two at once).
      await value.done;
      return this.fill(request);
    }
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

  /**
   * This caller's stream of a shared flight, or undefined when the start of the body is gone.
   * A caller whose Vary selection differs from the leader's fills its own variant.
   */
  private async join(request: FillRequest, flight: SharedFlight, collapsed: boolean): Promise<FillResult | undefined> {
    if (collapsed) {
      const mine = variantKey(request.primary, flight.head.vary, headerList(request.headers));
      if (mine !== flight.head.key && request.key !== mine) return this.fill({ ...request, key: mine });
    }
    let body = collapsed ? undefined : flight.first;
    if (body) flight.first = undefined;
    else body = flight.shared.reader();
    if (!body) return undefined;
    return {
      kind: "stream",
      head: flight.head,
      body,
      ...(flight.bytes !== undefined ? { bytes: flight.bytes } : {}),
      size: flight.size,
      fwdStatus: flight.fwdStatus,
      collapsed,
    };
  }

  private async storedFor(request: FillRequest): Promise<Entry | undefined> {
    const { entry } = await lookup(this.o.store, request.primary, request.key, headerList(request.headers));
    return request.purges ? applyPurge(entry, request.primary, request.purges) : entry;
  }

  private inBackground(work: Promise<FillResult>): void {
    // Nobody reads a background refresh's stream: let go of it (a kept body is still stored).
    const settled = work.then(discardStream).catch(() => undefined);
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
          result = await this.fetchAndStore(request, current, lease.token, expiry.signal);
          if (result.kind === "shared") {
            // The body is still arriving: the lease is the stream's now, released when it ends.
            clearTimeout(timer);
            this.stream(request, result, lease);
          }
          return result;
        } finally {
          if (result?.kind !== "shared") {
            clearTimeout(timer);
            await this.end(request.key, lease, result?.kind === "failed" ? `failed:${result.code}` : "done");
          }
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

  /** Releases the lease, then tells other processes waiting on the key how the flight ended. */
  private async end(key: string, lease: Lease, message: string): Promise<void> {
    await this.o.leases.release(lease).catch(() => false);
    await Promise.resolve(this.o.announceFill?.(key, message)).catch(() => undefined);
  }

  /**
   * Runs a shared flight to its end: callers may join while the body arrives, the lease is
   * extended meanwhile (a lost lease stops the body), a complete body is stored, and only
   * then is the lease released, so other processes wake to the stored entry.
   */
  private stream(request: FillRequest, flight: SharedFlight, lease: Lease): void {
    const { lockLeaseMs } = this.o.config.coordinator;
    this.streaming.set(request.key, flight);
    const keepAlive = setInterval(
      () =>
        void this.o.leases.extend(lease, lockLeaseMs).then(
          (held) => {
            if (!held) flight.shared.abort(new HerdlessError("LEASE_LOST", `lease on ${request.key} was lost`));
          },
          () => undefined,
        ),
      Math.max(1, Math.floor(lockLeaseMs / 3)),
    );
    const finished = (async () => {
      const end = await flight.shared.ended;
      clearInterval(keepAlive);
      if (this.streaming.get(request.key) === flight) this.streaming.delete(request.key);
      if (end.kind === "complete") {
        const stored = await this.put({ ...flight.head, body: end.body }, request.primary, flight.fwdStatus).catch(
          () => undefined,
        );
        if (stored?.kind === "entry" && stored.stored) this.o.onStored?.(stored.entry);
      }
      await this.end(request.key, lease, end.kind === "failed" ? `failed:${end.error.code}` : "done");
    })();
    flight.done = finished.catch(() => undefined);
    this.o.background?.(flight.done);
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
      { priority: request.priority, maxBodyBytes: this.bufferedUpTo(stored), key: request.key, signal },
    );
    if (result.kind !== "response") return this.failure(result.error, stored);
    return this.settle(request, stored, result.response, token);
  }

  /**
   * How much of the body to read before answering. Up to {@link SMALL_BODY_BYTES} when
   * there is no copy to fall back on: a body that size arrives in a packet or two, and whole
   * it is answered and stored in one piece; a larger one reaches callers as the origin sends
   * it. Up to `cache.maxEntryBytes` when a stored copy may stand in for a failure
   * (stale-if-error): an origin that fails mid-body is then hidden behind that copy rather
   * than shown as an aborted body.
   */
  private bufferedUpTo(stored: Entry | undefined): number {
    const { config, clock } = this.o;
    const hideable = decideOnFailure(stored, "ORIGIN_TRUNCATED", config, clock.now()).kind === "stale-if-error";
    return hideable ? config.cache.maxEntryBytes : Math.min(SMALL_BODY_BYTES, config.cache.maxEntryBytes);
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
    // A 304 has no body and an error's is only relayed to this flight's callers: read them whole.
    if (res.status === 304 || res.status >= 500) res = await buffered(res, config.cache.maxEntryBytes);
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
    if (!verdict.storable || res.status === 304) {
      // The stored copy no longer reflects what the origin says about this URL.
      if (stored && res.status !== 304 && saysAboutTheUrl(verdict)) await this.o.store.delete(stored.key);
      return {
        kind: "pass",
        response: { status: res.status, headers: res.headers, body: res.body },
        fwdStatus: res.status,
        reason: "uncacheable",
      };
    }
    let entry = entryFromResponse(res.kind === "buffered" ? res : { ...res, body: new Uint8Array(0) }, context);
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
    if (res.kind === "buffered") return this.put(entry, request.primary, res.status);
    return this.share(entry, res);
  }

  /** A storable answer whose body is still arriving: one read of it, for every caller. */
  private share(entry: Entry, res: StreamedOriginResponse): SharedFlight {
    const { maxEntryBytes } = this.o.config.cache;
    const declared = res.declaredBytes;
    const shared = new SharedBody(res.body, {
      keepBytes: maxEntryBytes,
      ...(declared !== undefined ? { declaredBytes: declared } : {}),
    });
    const { body: _empty, ...head } = entry;
    return {
      kind: "shared",
      head,
      shared,
      first: shared.reader(),
      bytes: declared,
      size: declared === undefined ? "unknown" : declared <= maxEntryBytes ? "fits" : "too-large",
      fwdStatus: res.status,
      done: Promise.resolve(),
    };
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

/** The response with its body read whole; a body above `limit` is dropped (cancelled, empty). */
async function buffered(res: OriginResponse, limit: number): Promise<OriginResponse> {
  if (res.kind === "buffered") return res;
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (res.body) {
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.byteLength;
        if (total > limit) {
          await reader.cancel().catch(() => undefined);
          return { ...res, kind: "buffered", body: new Uint8Array(0) };
        }
        chunks.push(value);
      }
    } catch {
      // A broken error body: the status is what matters.
      return { ...res, kind: "buffered", body: new Uint8Array(0) };
    }
  }
  return { ...res, kind: "buffered", body: concatBytes(chunks, total) };
}
