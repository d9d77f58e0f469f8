import type { Config } from "../config.ts";
import type { FillRequest } from "./coordinator.ts";
import type { Entry } from "../http/entry.ts";
import { HerdlessError } from "../errors.ts";
import type { Lease, LeaseManager } from "./lease.ts";
import type { Store } from "../store/store.ts";
import type { SharedFlight } from "./flight.ts";
import { storeEntry } from "./store-entry.ts";

export interface StreamingFlightsOptions {
  config: Config;
  store: Store;
  leases: LeaseManager;
  /** Keeps background work alive (ctx.waitUntil on Workers). */
  background?: (work: Promise<unknown>) => void;
  /** Hears each entry written once a streamed body completed. */
  onStored?: (entry: Entry) => void;
  /** Releases the lease and announces how the flight for `request` ended (`done` or `failed:<code>`). */
  end: (request: FillRequest, lease: Lease, message: string) => Promise<void>;
}

/**
 * Flights past their response head whose body is still arriving, by request key: a caller
 * that comes now still gets the whole body (the kept prefix, then the rest) rather than
 * waiting for the stored entry. A flight leaves once its body ended or passed
 * `cache.maxEntryBytes`. While it streams, this holds its lease.
 */
export class StreamingFlights {
  private readonly byKey = new Map<string, SharedFlight>();
  constructor(private readonly o: StreamingFlightsOptions) {}

  get(key: string): SharedFlight | undefined {
    return this.byKey.get(key);
  }

  /**
   * Runs a shared flight to its end: callers may join while the body arrives, the lease is
   * extended meanwhile (a lost lease stops the body), a complete body is stored, and only
   * then is the lease released, so other processes wake to the stored entry.
   */
  run(request: FillRequest, flight: SharedFlight, lease: Lease): void {
    this.byKey.set(request.key, flight);
    const keepAlive = this.keepLease(request.key, flight, lease);
    const finished = (async () => {
      const end = await flight.shared.ended;
      clearInterval(keepAlive);
      if (this.byKey.get(request.key) === flight) this.byKey.delete(request.key);
      if (end.kind === "complete") {
        const stored = await storeEntry(
          this.o.store,
          { ...flight.head, body: end.body },
          request.primary,
          flight.fwdStatus,
        ).catch(() => undefined);
        if (stored?.kind === "entry" && stored.stored) this.o.onStored?.(stored.entry);
      }
      // An abandoned body (every reader left) is no failure: announced done, it backs the key off nowhere.
      await this.o.end(request, lease, end.kind === "failed" ? `failed:${end.error.code}` : "done");
    })();
    flight.done = finished.catch(() => undefined);
    this.o.background?.(flight.done);
  }

  /**
   * Extends the lease now (the head may have taken most of its term) and every third of its
   * term; a lease found lost stops the body.
   */
  private keepLease(key: string, flight: SharedFlight, lease: Lease): ReturnType<typeof setInterval> {
    const { lockLeaseMs } = this.o.config.coordinator;
    const beat = () =>
      void this.o.leases.extend(lease, lockLeaseMs).then(
        (held) => {
          if (!held) flight.shared.abort(new HerdlessError("LEASE_LOST", `lease on ${key} was lost`));
        },
        () => undefined,
      );
    beat();
    return setInterval(beat, Math.max(1, Math.floor(lockLeaseMs / 3)));
  }
}
