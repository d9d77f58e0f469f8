import { routeFor } from "../config.ts";
import { discardStream, joinedFailure, type Coordinator, type FillRequest, type FillResult } from "./coordinator.ts";
import type { Entry } from "../http/entry.ts";
import { headerList } from "../http/http.ts";
import { variantKey } from "../http/key.ts";
import type { Lease } from "./lease.ts";
import { guardedCallDeps, type GuardedCallDeps } from "../origin/guarded-call.ts";
import { SingleFlight } from "./single-flight.ts";
import { sharedBodyLimits } from "./laggards.ts";
import { answersCaller, dueForRefresh, look, lookUnderLease, storedAnswer, storedFor } from "./answers.ts";
import type { Look } from "./answers.ts";
import { PlainLeads } from "./plain-leads.ts";
import { invalidateStored } from "../store/lookup.ts";
import {
  afterOrdinaryCallers,
  asJoined,
  mayTakeJoined,
  othersUnconfirmed,
  streamOf,
  validatesAlone,
} from "./flight.ts";
import type { FlightResult, SharedFlight } from "./flight.ts";
import { variantOf, type VariesFlight } from "./flight.ts";
import { announcement, answerHeard, endFlight, entryAfterWait, leaseStayedBusy } from "./relay.ts";
import { relayStream, STREAMING } from "./relay.ts";
import { fetchAndSettle } from "./settle.ts";
import { leaseBound, leaseExpiry } from "./held-flight.ts";
import { StreamingFlights } from "./streaming-flights.ts";
import { backoffAfterStream, backoffAnswer, notTheJoinersFailure, recordFlight } from "./flight-backoff.ts";
import { renewedAhead, renewedByHolder, RenewalsAhead, renewingAnswer } from "./refresh-ahead.ts";
import { standingAnswer, withWritesNoted } from "./stand-in.ts";
import { KeyBackoff, MemoryBackoffStore } from "../guard/key-backoff.ts";
import type { KeyCoordinatorOptions } from "./key-coordinator-options.ts";

export type { KeyCoordinatorOptions } from "./key-coordinator-options.ts";

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
  private readonly flights = new SingleFlight<string, FlightResult | VariesFlight>();
  private readonly originDeps: GuardedCallDeps;
  private readonly streaming: StreamingFlights;
  private readonly backoff: KeyBackoff;
  private readonly renewals = new RenewalsAhead();
  private readonly plainLeads = new PlainLeads();
  constructor(private readonly o: KeyCoordinatorOptions) {
    this.originDeps = guardedCallDeps(o, o.onOriginCall);
    this.streaming = new StreamingFlights({
      ...o,
      end: async (request, lease, message) => {
        await backoffAfterStream(this.backoff, request, message, this.o.config);
        await endFlight(this.o, request.key, lease, message);
      },
    });
    this.backoff = new KeyBackoff({
      store: o.backoff ?? new MemoryBackoffStore(o.clock),
      config: o.config,
      clock: o.clock,
      recoveredAt: async () => (await o.guard.snapshot()).recoveredAt,
    });
  }

  /**
   * The caller's answer, with the writes to its URL this coordinator noted before it came
   * (flight.ts mayTakeJoined), and no copy standing in for a failure that a purge or a write
   * made obsolete while the flight ran (stand-in.ts).
   */
  async fill(request: FillRequest): Promise<FillResult> {
    const asked = withWritesNoted(this.o.store, request, this.o.clock.now());
    return standingAnswer(this.o.store, asked, await this.answer(asked));
  }

  private async answer(request: FillRequest, askedAgain = false): Promise<FillResult> {
    // A revalidation does not answer from the stored entry: its flight reads it (as `before`).
    const joins = this.flights.has(request.key) || this.streaming.get(request.key) !== undefined;
    const unread = request.revalidate || this.plainLeads.unread(request, joins);
    const looked = unread ? undefined : look(this.o.store, this.backoff, request, !joins);
    const stored = await looked?.stored;
    // After the lookup: a soft purge makes the entry stale as of the time it was applied.
    const now = this.o.clock.now();
    // A caller come to renew an entry in its refresh-ahead window is answered by it only once renewed.
    if (
      stored &&
      !stored.negative &&
      now < stored.staleAt &&
      !(request.refreshAhead && dueForRefresh(this.o, request, stored))
    )
      return { kind: "entry", entry: stored, collapsed: false, stored: false };
    const share = routeFor(this.o.config, request.path).refreshAhead;
    // A cached error answers while fresh; an expired copy another edge renews answers until that lands.
    const renewing = request.priority === "foreground" ? this.renewals.renewing(request.key) : undefined;
    if (stored && renewedAhead(stored, share, renewing)) return renewingAnswer(stored);
    if (stored?.negative && now < stored.staleAt)
      return { kind: "entry", entry: stored, collapsed: false, stored: false };
    if (stored && request.priority === "foreground" && !stored.mustRevalidate && now < stored.swrUntil) {
      // A caller without a copy of its own gets the stale one at once; the refresh runs behind it.
      this.inBackground(this.answer({ ...request, key: stored.key, priority: "background" }));
      return { kind: "entry", entry: stored, collapsed: false, stored: false };
    }
    const streaming = this.streaming.get(request.key);
    if (streaming) {
      const joined = await this.join(request, streaming, true, askedAgain);
      if (joined) return joined;
    }
    const lead = () =>
      this.plainLeads.run(request, stored, () =>
        this.fetchUnderLease(request, looked ?? look(this.o.store, this.backoff, request, true)),
      );
    const { value, joined } = await this.flights.run(request.key, () =>
      request.refreshAhead && stored ? this.renewals.run(request.key, stored.staleAt, lead) : lead(),
    );
    // The store knew the Vary once the lease was held (VariesFlight): each caller fills its own variant.
    if (value.kind === "varies") return this.answer({ ...request, key: variantOf(request, value) }, askedAgain);
    if (value.kind === "shared") {
      const mine = await this.join(request, value, joined || value.relayed === true, askedAgain);
      if (mine) return mine;
      // Too late for the start of a body too large to keep: ask again once that fetch ended (never two at once).
      await value.done;
      return this.answer(request);
    }
    if (!joined) return value;
    // Another request's unconfirmed error is not this caller's: it asks again, once, with the others it was given to.
    if (!askedAgain && (await othersUnconfirmed(value, request, this.o.config, this.o.clock.now()))) {
      await afterOrdinaryCallers(request, this.o.config);
      return this.answer({ ...request, confirming: true }, true);
    }
    // A failure, or a refusal, of the leader's own input is not this caller's: it asks again, once.
    const leadersOwn = value.kind === "failed" || value.kind === "pass";
    if (leadersOwn && !askedAgain && notTheJoinersFailure(value, request, this.o.config))
      return this.answer(request, true);
    if (value.kind === "pass" || value.kind === "alone") return { kind: "alone" };
    if (value.kind === "failed") return joinedFailure(value);
    if (validatesAlone(value.entry)) return { kind: "alone" };
    // The leader discovered a Vary this caller selects differently on: fill its own variant.
    const mine = variantKey(request.primary, value.entry.vary, headerList(request.headers));
    if (mine !== value.entry.key && request.key !== mine) return this.answer({ ...request, key: mine });
    return mayTakeJoined(value, request, this.o.config) ? asJoined(value) : this.answer(request, true);
  }

  async invalidate(primary: string, headers: [string, string][]): Promise<void> {
    await invalidateStored(this.o.store, primary, headerList(headers), this.o.clock.now());
  }

  /**
   * This caller's stream of a shared flight, or undefined when the start of the body is gone.
   * A caller whose Vary selection differs from the leader's fills its own variant.
   */
  private async join(
    request: FillRequest,
    flight: SharedFlight,
    collapsed: boolean,
    askedAgain: boolean,
  ): Promise<FillResult | undefined> {
    if (collapsed && validatesAlone(flight.head)) return { kind: "alone" };
    // Another request's unconfirmed error (a 400 arriving): asked again once it is stored, as for a joined entry.
    if (collapsed && !askedAgain && (await othersUnconfirmed(flight, request, this.o.config, this.o.clock.now()))) {
      await flight.done;
      await afterOrdinaryCallers(request, this.o.config);
      return this.answer({ ...request, confirming: true }, true);
    }
    if (collapsed) {
      const mine = variantKey(request.primary, flight.head.vary, headerList(request.headers));
      if (mine !== flight.head.key && request.key !== mine) return this.answer({ ...request, key: mine });
    }
    return collapsed && !mayTakeJoined(flight, request, this.o.config) ? undefined : streamOf(flight, collapsed);
  }

  /** Whether `heard`, another process's answer, is another request's unconfirmed error (flight.ts othersUnconfirmed). */
  private async othersHeard(request: FillRequest, heard: FlightResult): Promise<boolean> {
    if (heard.kind !== "failed" || request.confirming) return false;
    return othersUnconfirmed(heard, request, this.o.config, this.o.clock.now());
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
  private async fetchUnderLease(request: FillRequest, looked: Look): Promise<FlightResult | VariesFlight> {
    const { lockLeaseMs, waitTimeoutMs } = this.o.config.coordinator;
    // What the fill read: nothing was awaited between its read and this flight's start.
    const before = await looked.stored;
    // A key backing off is refused before anyone queues for its lease.
    const checked = await (looked.backoff ?? this.backoff.check(request.key));
    const backedOff = await backoffAnswer(checked, this.o, request, before);
    if (backedOff) return backedOff;
    let giveUpAt = this.o.clock.now() + waitTimeoutMs;
    // The copy as the store holds it now: read again after each wait (a purge or a write may take it).
    let held = before;
    for (;;) {
      const acquiring = this.o.leases.acquire(request.key, lockLeaseMs);
      const underLease = this.o.readsFollowAcquire ? lookUnderLease(this.o.store, this.backoff, request) : undefined;
      underLease?.catch(() => undefined);
      const lease = await acquiring;
      const flown = lease && (await this.holding(request, before, lease, underLease));
      if (flown) return flown;
      // Its lease was taken while it queued for a permit (held-flight.ts): it waits on the key's holder now.
      if (lease) giveUpAt = Math.max(giveUpAt, this.o.clock.now() + waitTimeoutMs);
      // Another process holds it: its refresh-ahead of this copy lets the copy answer; else wait, then look again.
      const copy = await renewedByHolder(this.o, request, held);
      if (copy) return renewingAnswer(copy);
      const remaining = giveUpAt - this.o.clock.now();
      if (remaining <= 0) return leaseStayedBusy(request.key, waitTimeoutMs, held);
      // What ends the wait answers this caller: for a refresh-ahead a renewed copy, not the one it came to renew.
      const answers = (entry: Entry | undefined): entry is Entry => answersCaller(this.o, request, entry, before);
      const answered = () => storedAnswer(this.o, request, before);
      const news = await (this.o.waitForFill?.(request.key, Math.min(remaining, lockLeaseMs), answered) ??
        delay(Math.min(remaining, 50)));
      // The holder is alive and streaming a body nobody else reads: wait on, for its end.
      if (news?.message === STREAMING) {
        giveUpAt = Math.max(giveUpAt, this.o.clock.now() + waitTimeoutMs);
        continue;
      }
      const filled = (held = await entryAfterWait(request, news, () => storedFor(this.o.store, request)));
      const stored = { before, filled, fresh: answers(filled) };
      const limits = sharedBodyLimits(this.o.config);
      const heard = await answerHeard(this.o.relay, request.key, news?.message, stored, limits, request.confirming);
      if (heard && !(await this.othersHeard(request, heard))) return heard;
      // Another process's error status, unconfirmed or not relayed: this caller asks under the lease, and its own confirms it.
      if (heard || news?.message === "failed:ORIGIN_STATUS") request = { ...request, confirming: true };
    }
  }

  /**
   * The flight while this process holds the key's lease: look again (someone may have filled
   * the key while we queued, or the key may have started backing off), fetch, and record
   * what the call said about the origin in the key's backoff, all before the lease goes.
   * Undefined when the lease was taken before the call was made: the caller waits on the key.
   */
  private async holding(
    request: FillRequest,
    before: Entry | undefined,
    lease: Lease,
    underLease = lookUnderLease(this.o.store, this.backoff, request),
  ): Promise<FlightResult | VariesFlight | undefined> {
    const expiry = leaseExpiry(request.key, this.o.config.coordinator.lockLeaseMs);
    const bound = leaseBound(this.o.guard, this.o.leases, lease);
    let result: FlightResult | VariesFlight | undefined;
    try {
      // Both again, side by side, now that the lease keeps other writers out.
      const [{ entry: current, kept, key }, checked] = await underLease;
      if (answersCaller(this.o, request, current, before))
        return (result = { kind: "entry", entry: current, collapsed: true, stored: false });
      if (key !== request.key) return (result = { kind: "varies", vary: kept.vary });
      if ((result = await backoffAnswer(checked, this.o, request, current))) return result;
      // A refresh-ahead marks its lease with the copy it renews, for the others (renewedByHolder).
      if (request.refreshAhead && before) await this.o.leases.markRenewing?.(lease, before.staleAt).catch(() => {});
      result = await fetchAndSettle(this.o, { ...this.originDeps, guard: bound.guard }, request, current, {
        token: lease.token,
        signal: expiry.signal,
        kept,
      });
      if (bound.taken()) return undefined;
      // The relay's own reader, taken before anything is awaited: the body may not run past what is kept first.
      const relayed = result.kind === "shared" && this.o.relay ? result.shared.reader() : undefined;
      result = await recordFlight(this.backoff, request, result, this.o.config, checked.record);
      if (result.kind === "shared") {
        // The body is still arriving: the lease is the stream's now, released when it ends.
        expiry.clear();
        this.streaming.run(request, result, lease);
        if (relayed) this.o.background?.(relayStream(this.o, request.key, lease.token, result, relayed));
      }
      return result;
    } finally {
      if (result?.kind !== "shared") expiry.clear();
      // A lease taken before the call is another's: nothing to free, nothing to announce.
      if (result?.kind !== "shared" && !bound.taken()) {
        const message = announcement(this.o.relay, request.key, lease.token, result);
        const stored = result?.kind === "entry" ? result.entry : undefined;
        const ended = endFlight(this.o, request.key, lease, message, stored);
        // A stored entry's end goes behind the answer: a later caller finds the entry, or the
        // release already sent. Any other answer was this flight's alone (RFC 9111 §4.2.2): a
        // caller after it must find the lease free, not wait on it and be handed that answer.
        if (result?.kind === "entry") this.o.background?.(ended);
        else await ended;
      }
    }
  }
}

const delay = (ms: number): Promise<undefined> => new Promise((resolve) => setTimeout(() => resolve(undefined), ms));
