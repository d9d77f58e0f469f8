import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { Clock } from "../core/clock.ts";
import type { Config } from "../core/config.ts";
import type { Entry } from "../core/http/entry.ts";
import { hitHeaders } from "../core/http/respond.ts";
import { targetUrl } from "../core/http/request-check.ts";
import type { HeaderReader } from "../core/http/http.ts";
import type { Metrics } from "../core/admin/metrics.ts";
import { freshHit, UrlTargets, type UrlTarget } from "../core/http/fresh-hit.ts";
import type { PurgeSnapshot } from "../core/admin/purge.ts";
import type { LruStore } from "../core/store/lru-store.ts";

export interface HitPathOptions {
  config: Config;
  clock: Clock;
  near: LruStore;
  metrics: Metrics;
  purges: { current(): PurgeSnapshot };
}

/**
 * The URL the engine sees for a Node request (core `targetUrl`: absolute-form targets keep
 * their own host, `//x/p` is a path). Throws for a target the handler refuses first.
 */
export function requestUrl(req: IncomingMessage): URL {
  const url = targetUrl(req.url ?? "/", req.headers.host ?? "localhost");
  if (!url) throw new Error(`invalid request-target ${req.url}`);
  return url;
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
  private readonly targets: UrlTargets;
  /** Node's flat form of each header list `hitHeaders` hands out, and each body as a Buffer view. */
  private readonly flat = new WeakMap<[string, string][], string[]>();
  private readonly bodies = new WeakMap<Entry, Buffer>();

  constructor(private readonly o: HitPathOptions) {
    this.targets = new UrlTargets(o.config);
  }

  /**
   * Writes a fresh hit and returns true; false when the engine must answer. `startedAt`, a
   * reading of `metrics.started()` when the request arrived, times it for the histograms.
   */
  serve(req: IncomingMessage, res: ServerResponse, startedAt?: number): boolean {
    const method = req.method;
    if (method !== "GET" && method !== "HEAD") return false;
    const headers = req.headers;
    const target = this.target(req);
    if (!target) return false;
    const now = this.o.clock.now();
    const facts = {
      method,
      hasAuthorization: headers.authorization !== undefined,
      hasCookie: headers.cookie !== undefined,
    };
    const entry = freshHit(
      this.o.near,
      target.route,
      target.primary,
      facts,
      headerReader(headers),
      this.o.purges.current(),
      now,
    );
    if (!entry) return false;
    res.writeHead(entry.status, this.flatHeaders(entry, now));
    if (method === "HEAD") res.end();
    else res.end(this.body(entry));
    this.o.metrics.count(entry.negative ? "negative" : "hit", target.primary, startedAt);
    return true;
  }

  /** `hitHeaders` as `[name, value, name, value, …]`, flattened once per list. */
  private flatHeaders(entry: Entry, now: number): string[] {
    const pairs = hitHeaders(entry, now);
    let flat = this.flat.get(pairs);
    if (!flat) this.flat.set(pairs, (flat = pairs.flat()));
    return flat;
  }

  /** The body as a Buffer view (no copy), so Node does not wrap the Uint8Array on every write. */
  private body(entry: Entry): Buffer {
    let body = this.bodies.get(entry);
    if (!body)
      this.bodies.set(entry, (body = Buffer.from(entry.body.buffer, entry.body.byteOffset, entry.body.byteLength)));
    return body;
  }

  private target(req: IncomingMessage): UrlTarget | undefined {
    try {
      return this.targets.get(`${req.headers.host ?? "localhost"} ${req.url ?? "/"}`, () => requestUrl(req));
    } catch {
      return undefined;
    }
  }
}
