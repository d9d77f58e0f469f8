import type { Entry } from "../http/entry.ts";
import type { FillRequest } from "./coordinator.ts";

/**
 * The keys whose flight in this process was started by a plain caller (a foreground request,
 * neither a revalidation nor a refresh-ahead) over a stored entry without Vary that did not
 * answer it (stale, past its stale-while-revalidate). Nothing stored answers a plain caller
 * that comes while that flight runs either: time only ages the entry, a purge only takes from
 * it, and another process's fill of the key is heard by the flight. Such a caller joins the
 * flight without reading the store: at each expiry every caller of a fleet member read the
 * entry from Redis before joining its member's flight (~17 reads per fill in `steady`).
 *
 * @example
 * const look = plainLeads.unread(request, joins) ? undefined : readTheStore(request);
 * await flights.run(request.key, () => plainLeads.run(request, stored, lead));
 */
export class PlainLeads {
  private readonly leads = new Map<string, object>();

  /** Whether `request`, which `joins` a flight running for its key, may join it without reading the store. */
  unread(request: FillRequest, joins: boolean): boolean {
    return joins && isPlain(request) && this.leads.has(request.key);
  }

  /** Runs the flight `lead` for `request`, whose lookup found `stored`; a plain one marks its key while it runs. */
  async run<T>(request: FillRequest, stored: Entry | undefined, lead: () => Promise<T>): Promise<T> {
    if (!isPlain(request) || stored?.key !== request.key || stored.vary.length > 0) return lead();
    const mark = {};
    this.leads.set(request.key, mark);
    try {
      return await lead();
    } finally {
      if (this.leads.get(request.key) === mark) this.leads.delete(request.key);
    }
  }
}

function isPlain(request: FillRequest): boolean {
  return request.priority === "foreground" && !request.revalidate && !request.refreshAhead;
}
