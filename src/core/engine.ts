import type { CacheStatus } from "./http/cache-status.ts";
import { routeFor } from "./config.ts";
import { discardStream, failedFill as failed } from "./fill/coordinator.ts";
import type { FillRequest, FillResult } from "./fill/coordinator.ts";
import { answerFromEntry, notCached, wholeRange } from "./http/answer.ts";
import { decide, type RequestFacts } from "./http/decision.ts";
import { askUnlessRefused } from "./fill/refusal-marks.ts";
import type { Entry } from "./http/entry.ts";
import { primaryKey } from "./http/key.ts";
import { personalCookies } from "./http/cookies.ts";
import { clientWantsRevalidation, onlyIfCachedRefusal, requestDirectives } from "./http/request-directives.ts";
import { answeredAlone, nearThenShared } from "./store/shared-look.ts";
import type { Metrics } from "./admin/metrics.ts";
import { guardedCallDeps } from "./origin/guarded-call.ts";
import { forwardPolicy, selectingView, type ForwardPolicy } from "./origin/forward.ts";
import { relay, type RelayFallback } from "./origin/relay.ts";
import { openTunnel, type TunnelDeps, type TunnelOpening, type TunnelSlots } from "./origin/tunnel.ts";
import { applyPurge } from "./admin/purge.ts";
import type { EngineRequest, EngineResponse } from "./http/respond.ts";
import type { EngineOptions } from "./engine-options.ts";
import { MarkedMisses } from "./engine-pass.ts";
import { PassMarks } from "./fill/pass-marks.ts";
import { answeredHere, waitingFullAnswer } from "./http/failure-answer.ts";
import { relayUnsafe, type UnsafeDeps } from "./engine-unsafe.ts";
import { held } from "./guard/waiting-requests.ts";
import { ask, heldAnswer, type AnswerContext } from "./engine-answer.ts";
import { fillRequest } from "./fill/fill-request.ts";
import { servedTo } from "./http/asked-by.ts";
import { softPurgedJoin } from "./fill/flight.ts";
import { standingCopies } from "./fill/stand-in.ts";
import { NearTier } from "./store/near-tier.ts";
import { RefreshMarks } from "./fill/refresh-marks.ts";
import { SingleFlight } from "./fill/single-flight.ts";
import { refreshAheadDue, renewedAhead } from "./fill/refresh-ahead.ts";

export type { EngineRequest } from "./http/respond.ts";
export type { EngineOptions } from "./engine-options.ts";

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
  private readonly relayDeps: TunnelDeps;
  private readonly nearTier: NearTier;
  private readonly answers: AnswerContext;
  private readonly marks: RefreshMarks;
  private readonly misses: MarkedMisses;
  private readonly unsafeDeps: UnsafeDeps;
  constructor(private readonly o: EngineOptions) {
    this.marks = o.refreshMarks ?? new RefreshMarks(o.config.coordinator.waitTimeoutMs);
    this.forward = forwardPolicy(o.config);
    this.nearTier = new NearTier(o);
    const originDeps = guardedCallDeps(o, o.onOriginCall ?? ((event) => o.metrics?.originCall(event.outcome)));
    this.relayDeps = { config: o.config, forward: this.forward, originDeps };
    const passMarks =
      o.passMarks ?? new PassMarks(o.config.coordinator.uncacheableMemoryMs, o.config.origin.maxConcurrency);
    this.misses = new MarkedMisses(passMarks, o.clock, (request, status, heard) =>
      this.relay(request, status, "pass", heard),
    );
    const { coordinator, onDegraded } = o;
    const relayHeld = (request: EngineRequest, status: CacheStatus) => this.relayHeld(request, status);
    this.unsafeDeps = {
      config: o.config,
      forward: this.forward,
      nearTier: this.nearTier,
      coordinator,
      onDegraded,
      relay: relayHeld,
    };
    this.answers = {
      config: o.config,
      clock: o.clock,
      nearTier: this.nearTier,
      count: (request, kind, key) => this.count(request, kind, key),
      protect: (kind) => o.metrics?.protect(kind),
      relay: (request, status, kind, fallback) => this.relay(request, status, kind, undefined, fallback),
      standIn: async (copies, primary) => standingCopies(o.near, primary, copies, await o.purges?.()),
    };
  }

  async handle(request: EngineRequest): Promise<EngineResponse> {
    const route = routeFor(this.o.config, request.url.pathname);
    const facts: RequestFacts = {
      method: request.method,
      hasAuthorization: request.headers.get("authorization") !== null,
      hasCookie: personalCookies(request.headers.get("cookie"), this.o.config.cache.ignoreCookies),
    };
    const here = answeredHere(request, this.forward.loopEntry);
    if (here) return here;
    const primary = primaryKey(request.url, route.key);
    if (facts.method !== "GET" && facts.method !== "HEAD") return relayUnsafe(this.unsafeDeps, request);
    const directives = requestDirectives(request.headers);
    const alone = answeredAlone(directives, facts, route);
    const [found, purges] = await this.lookUp(primary, request, route.cacheAuthorized || facts.hasAuthorization, alone);
    if (purges) found.entry = applyPurge(found.entry, primary, purges);
    const at = { route, primary, found, purges };
    const fill = (priority: FillRequest["priority"], revalidate = false, authorized = false) =>
      fillRequest(this.o.config, this.forward, request, { ...at, priority, revalidate, authorized });
    // An unconfirmed error (asked-by.ts) another request's fill got is a miss for this one.
    if (found.entry?.askedBy !== undefined) found.entry = await servedTo(found.entry, fill("foreground").headers);
    const now = this.o.clock.now();
    const decision = decide(found.entry, found.key, facts, route, now);
    // RFC 9111 §5.2.1.7: nothing servable without going forward.
    const uncached = onlyIfCachedRefusal(directives, decision, route, found.varyMiss, now);
    if (uncached) return notCached({ fwd: uncached });
    switch (decision.kind) {
      case "bypass":
        // Through the coordinator, never from the store: one origin request, stored if shareable.
        if (decision.reason === "authorization")
          return this.filled(request, () => this.fill(fill("foreground", true, true)), "request", undefined, primary);
        return this.relayHeld(request, { fwd: "bypass" });
      case "fresh":
      case "stale-while-revalidate": {
        if (clientWantsRevalidation(route, directives, decision.entry, now)) {
          // A cookie request served a public copy (decide) asks alone: a fill's answer need not be public.
          if (facts.hasCookie && !route.cacheAuthorized) return this.relayHeld(request, { fwd: "bypass" });
          return this.filled(request, () => this.fill(fill("foreground", true)), "request", decision.entry, primary);
        }
        const entry = decision.entry;
        if (decision.kind === "stale-while-revalidate") {
          this.count(request, "stale", primary);
          this.o.background(this.refresh(fill("background")));
          return answerFromEntry(entry, { hit: true, detail: "stale-while-revalidate" }, ask(request), now);
        }
        this.count(request, entry.negative ? "negative" : "hit", primary);
        // Refresh-ahead: in the last part of its lifetime a hot copy is renewed behind this answer.
        const ahead = refreshAheadDue(entry, route.refreshAhead, now);
        if (ahead) this.o.background(this.refresh({ ...fill("background"), refreshAhead: true }, entry.staleAt));
        const detail = entry.negative ? "negative" : ahead ? "refresh-ahead" : undefined;
        return answerFromEntry(entry, { hit: true, ...(detail ? { detail } : {}) }, ask(request), now);
      }
      case "revalidate":
      case "miss": {
        const fwd: CacheStatus["fwd"] =
          decision.kind === "revalidate" ? "stale" : found.varyMiss ? "vary-miss" : "uri-miss";
        // Without a copy here, the coordinator's own copy must not answer a no-cache the route honours either.
        const validated = route.honorRequestNoCache && (directives.noCache || directives.maxAgeMs === 0);
        // Expired while this edge's refresh-ahead renews it: the copy answers until the renewal lands.
        if (
          decision.kind === "revalidate" &&
          !validated &&
          renewedAhead(decision.entry, route.refreshAhead, this.marks.renewing(found.key, now))
        ) {
          this.count(request, "stale", primary);
          return answerFromEntry(decision.entry, { hit: true, detail: "stale-while-revalidate" }, ask(request), now);
        }
        const near = decision.kind === "revalidate" ? decision.entry : undefined;
        const miss = { request, key: found.key, facts, route, fwd, take: !near };
        const filling = () =>
          this.misses.waitFor(miss, () => this.fill(fill("foreground", validated), !validated && near));
        return this.filled(request, filling, fwd, near, primary);
      }
    }
  }

  /**
   * The near tier's entry and the purges in force, read side by side: a miss waits for one
   * read, not two in a row. A variant is looked up by the headers a fill of the request sends
   * (`credentials`: with its Authorization or Cookie, as that fill would be), the ones it was stored by.
   * A request `alone` (no fill answers it) may be answered by a fleet's shared copy (shared-look.ts).
   */
  private lookUp(primary: string, request: EngineRequest, credentials: boolean, alone: boolean) {
    const { rawHeaders, url, clientAddress } = request;
    const selecting = selectingView(rawHeaders, this.forward, { credentials, url, clientAddress });
    const keep = (entry: Entry) => this.o.background(this.nearTier.keep(entry, primary));
    return Promise.all([nearThenShared(this.o, primary, selecting, alone, keep), this.o.purges?.()]);
  }

  /**
   * Asks the coordinator, falling back to local single-flight when it is unreachable; or not,
   * while a refusal of the key stands that `copy` answers in place of (fill/refusal-marks.ts).
   */
  private async fill(fill: FillRequest, copy?: Entry | "kept" | false): Promise<FillResult> {
    const result = await askUnlessRefused(this.o, this.nearTier, fill, copy || undefined, () => this.ask(fill));
    // Counted where the flight's result arrives unshared: once per key that began backing off.
    if (result.kind === "failed" && result.backoffStarted && !result.collapsed)
      this.o.metrics?.protect("backoff-started");
    // The expired copy answers while a renewal (another process's) runs: follow that renewal from
    // here, so this edge answers with its copy until it lands, then keeps the renewed one.
    if (result.kind === "entry" && result.renewing && fill.priority === "foreground")
      this.o.background(this.refresh({ ...fill, priority: "background" }, result.entry.staleAt));
    // A joined flight's page a soft purge covers answers stale, with the one revalidation behind it.
    const softened = softPurgedJoin(result, fill);
    if (softened !== result && fill.priority === "foreground")
      this.o.background(this.refresh({ ...fill, priority: "background" }));
    return softened;
  }

  private async ask(fill: FillRequest): Promise<FillResult> {
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

  /**
   * One background refresh per key per edge; the fresher entry lands in the near tier.
   * `renews`: the expiry of the copy a refresh-ahead renews (it answers past it meanwhile).
   */
  private async refresh(fill: FillRequest, renews?: number): Promise<void> {
    const marks = this.marks;
    if (!marks.begin(fill.key, this.o.clock.now(), renews)) return;
    try {
      await this.refreshes.run(fill.key, async () => {
        const result = discardStream(await this.fill(fill, "kept"));
        if (result.kind === "entry" && !result.unkept) await this.nearTier.keep(result.entry, fill.primary);
        // The origin's answer replaced the copy (a 200 or a 304 that made it private or
        // no-store, RFC 9111 §4.3.4), as a foreground fill's does (answerFill): this edge's goes
        // too. Kept, it answered as stale-while-revalidate, each answer one more origin request.
        else if (result.kind === "pass" && !result.keepsCopy) await this.nearTier.drop(fill.key);
      });
    } catch {
      // A failed refresh leaves the stale copy in place; the next request past it tries again.
    } finally {
      marks.end(fill.key);
    }
  }

  /** A request waiting for `filling`, holding one of the `origin.maxWaiting` places (engine-answer.ts heldAnswer). */
  private filled(
    request: EngineRequest,
    filling: () => Promise<FillResult | EngineResponse>,
    fwd: CacheStatus["fwd"],
    nearStale: Entry | undefined,
    primary: string,
  ): Promise<EngineResponse> {
    return heldAnswer(this.answers, this.o.waiting, request, filling, { fwd, nearStale, primary });
  }

  /** A relay holding one of the `origin.maxWaiting` places until the origin's head came; with none free, a 503 at once. */
  private relayHeld(request: EngineRequest, status: CacheStatus): Promise<EngineResponse> {
    return held(
      this.o.waiting,
      () => this.relay(request, status, "bypass"),
      async () => {
        this.count(request, "refused", undefined);
        return waitingFullAnswer(status);
      },
    );
  }

  /** Relays a request as it is, through the guard, streaming the answer (origin/relay.ts). */
  private async relay(
    request: EngineRequest,
    status: CacheStatus,
    kind: "bypass" | "pass",
    heard?: Parameters<typeof relay>[3],
    fallback?: RelayFallback,
  ): Promise<EngineResponse> {
    let fellBack = false;
    const instead: RelayFallback | undefined =
      fallback &&
      ((code, fwdStatus) => {
        const answer = fallback(code, fwdStatus);
        fellBack = answer !== undefined;
        return answer;
      });
    const response = await relay(this.relayDeps, request, status, heard, instead);
    if (fellBack) return response;
    // Counted once the origin answered, so its latency is the relay's; a fallback counts its own.
    this.count(request, kind, undefined);
    // A miss relayed for a URL whose answers cannot be shared took its Range to the origin: an
    // origin that sent the whole 200 has it cut here, as from the fill it stands in for
    // (answerFromPass). A bypassed or unsafe request gets the origin's answer as it is.
    return kind === "pass" ? wholeRange(response, ask(request), this.o.clock.now()) : response;
  }

  /** A WebSocket handshake (`opensTunnel` said so) relayed with its upgrade: origin/tunnel.ts. */
  tunnel(request: EngineRequest, slots: TunnelSlots, signal?: AbortSignal): Promise<TunnelOpening> {
    return openTunnel(this.relayDeps, request, slots, signal).finally(() => this.count(request, "bypass", undefined));
  }

  /** Counts an answer by kind, and times it from `request.receivedAt` when the adapter took that reading. */
  private count(request: EngineRequest, kind: Parameters<Metrics["count"]>[0], key: string | undefined): void {
    this.o.metrics?.count(kind, key, request.receivedAt);
  }
}
