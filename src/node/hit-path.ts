import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { formatCacheStatus, ttlSeconds, type CacheStatus } from "../core/cache-status.ts";
import type { Clock } from "../core/clock.ts";
import { routeFor, type Config, type RoutePolicy } from "../core/config.ts";
import { ageSeconds, type Entry } from "../core/entry.ts";
import type { HeaderReader } from "../core/http.ts";
import { primaryKey } from "../core/key.ts";
import type { Metrics } from "../core/metrics.ts";
import { freshHit } from "../core/fresh-hit.ts";
import type { PurgeSnapshot } from "../core/purge.ts";
import type { LruStore } from "../core/lru-store.ts";

export interface HitPathOptions {
  config: Config;
  clock: Clock;
  near: LruStore;
  metrics: Metrics;
  purges: { current(): PurgeSnapshot };
}

/** What the engine's request flow computes from a URL alone: memoized per host + URL. */
interface Target {
  route: RoutePolicy;
  primary: string;
}

/** An entry's answer, flattened once; only Age and Cache-Status are rebuilt, and only when they change. */
interface Prepared {
  /** Entry headers without Cache-Status, as `[name, value, name, value, …]`. */
  base: string[];
  /** Cache-Status values from caches nearer the origin, joined with a trailing ", ". */
  upstream: string;
  contentLength: string;
  /** The body as a Buffer view (no copy), so Node does not wrap the Uint8Array on every write. */
  body: Buffer;
  age: number;
  ttl: number;
  flat: string[];
}

const MAX_TARGETS = 10_000;

/** The URL the engine sees for a Node request (absolute-form request targets keep their own host). */
export function requestUrl(req: IncomingMessage): URL {
  return new URL(req.url ?? "/", `http://${req.headers.host ?? "localhost"}`);
}

/** Node's parsed request headers as a {@link HeaderReader}; repeated fields joined with ", ". */
export function headerReader(headers: IncomingHttpHeaders): HeaderReader {
  return {
    get(name: string): string | null {
      const value = headers[name];
      if (value === undefined) return null;
      return Array.isArray(value) ? value.join(", ") : value;
    },
  };
}

/**
 * The cache-hit path of the Node server: a fresh entry in the process LRU is written
 * straight to the socket, synchronously, with no Web `Response`, no promise, and headers
 * flattened once per entry. It makes the engine's own decision (route, key, Vary, `decide`)
 * and answers only `fresh`; anything else returns false and the engine answers. The bytes
 * on the wire are those of `fromEntry` (the server test compares both paths). An entry a
 * purge covers goes to the engine, which applies the purge.
 *
 * @example
 * const hits = new HitPath({ config, clock, near, metrics });
 * if (!hits.serve(req, res)) await engine.handle(toEngineRequest(req));
 */
export class HitPath {
  private readonly targets = new Map<string, Target>();
  private readonly prepared = new WeakMap<Entry, Prepared>();

  constructor(private readonly o: HitPathOptions) {}

  /** Writes a fresh hit and returns true; false when the engine must answer. */
  serve(req: IncomingMessage, res: ServerResponse): boolean {
    const method = req.method;
    if (method !== "GET" && method !== "HEAD") return false;
    const headers = req.headers;
    const target = this.target(req);
    if (!target) return false;
    const now = this.o.clock.now();
    const facts = { method, hasAuthorization: headers.authorization !== undefined, hasCookie: headers.cookie !== undefined };
    const entry = freshHit(this.o.near, target.route, target.primary, facts, headerReader(headers), this.o.purges.current(), now);
    if (!entry) return false;
    this.o.metrics.count(entry.negative ? "negative" : "hit", target.primary);
    const p = this.prepare(entry, now);
    res.writeHead(entry.status, p.flat);
    if (method === "HEAD") res.end();
    else res.end(p.body);
    return true;
  }

  /** The entry's answer at `now`: the flat header list `fromEntry` would produce for a fresh hit, and the body. */
  private prepare(entry: Entry, now: number): Prepared {
    let p = this.prepared.get(entry);
    if (!p) {
      p = prepare(entry);
      this.prepared.set(entry, p);
    }
    const age = ageSeconds(entry, now);
    const ttl = ttlSeconds(entry.staleAt, now);
    if (age !== p.age || ttl !== p.ttl) {
      const status: CacheStatus = { hit: true, ttlSeconds: ttl, ...(entry.negative ? { detail: "negative" } : {}) };
      p.flat = [...p.base, "age", String(age), "cache-status", p.upstream + formatCacheStatus(status), "content-length", p.contentLength];
      p.age = age;
      p.ttl = ttl;
    }
    return p;
  }

  private target(req: IncomingMessage): Target | undefined {
    const memo = `${req.headers.host ?? "localhost"} ${req.url ?? "/"}`;
    let target = this.targets.get(memo);
    if (target) return target;
    let url: URL;
    try {
      url = requestUrl(req);
    } catch {
      return undefined;
    }
    const route = routeFor(this.o.config, url.pathname);
    target = { route, primary: primaryKey(url, route.key) };
    // Bounded: a flood of distinct URLs costs a re-parse, never memory.
    if (this.targets.size >= MAX_TARGETS) this.targets.clear();
    this.targets.set(memo, target);
    return target;
  }
}

function prepare(entry: Entry): Prepared {
  const base: string[] = [];
  const upstream: string[] = [];
  for (const [name, value] of entry.headers) {
    if (name === "cache-status") upstream.push(value);
    else base.push(name, value);
  }
  return {
    base,
    upstream: upstream.length === 0 ? "" : `${upstream.join(", ")}, `,
    contentLength: String(entry.body.byteLength),
    body: Buffer.from(entry.body.buffer, entry.body.byteOffset, entry.body.byteLength),
    age: Number.NaN,
    ttl: Number.NaN,
    flat: [],
  };
}
