/** What one access-log line tells of a request, on either runtime. */
export interface AccessFacts {
  method: string;
  /** The request-target as received (a path and query, or an absolute URL). */
  target: string;
  host: string | null;
  status: number;
  /** The answer's `Cache-Status`; null when herdless wrote none (the admin API). */
  cacheStatus: string | null;
  /** From the request's arrival to its answer's end (Node) or to its head (Worker). */
  ms: number;
  client: string | null;
  /** False when the client went away before the whole answer was written (Node). */
  complete: boolean;
}

/** Targets longer than this are cut in the line (a target may be 16 KiB). */
const TARGET_MAX_CHARS = 2048;

/**
 * One access-log line (`log.access`), the same fields on Node and on the Worker, as JSON:
 * what nginx's `access_log` or `varnishncsa` give, with herdless's `Cache-Status`.
 *
 * @example
 * accessLine({ method: "GET", target: "/p", host: "site.test", status: 200, cacheStatus: "herdless; hit", ms: 0.4, client: "192.0.2.1", complete: true }, new Date());
 */
export function accessLine(facts: AccessFacts, at: Date): string {
  const target = facts.target.length > TARGET_MAX_CHARS ? `${facts.target.slice(0, TARGET_MAX_CHARS)}…` : facts.target;
  return JSON.stringify({
    time: at.toISOString(),
    msg: "request",
    ...facts,
    target,
    ms: Math.round(facts.ms * 10) / 10,
  });
}

/** The `Cache-Status` among an answer's headers. */
export function cacheStatusOf(headers: Iterable<readonly [string, string]>): string | null {
  for (const [name, value] of headers) if (name.toLowerCase() === "cache-status") return value;
  return null;
}
