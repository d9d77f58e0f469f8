import type { IncomingMessage, ServerResponse } from "node:http";
import type { Clock } from "../core/clock.ts";
import type { Config, RoutePolicy } from "../core/config.ts";
import type { Entry } from "../core/http/entry.ts";
import { ageSeconds, staleSince } from "../core/http/entry.ts";
import { ttlSeconds } from "../core/http/cache-status.ts";
import { hitHeaders } from "../core/http/respond.ts";
import { forwardedScheme, targetUrl, type Scheme } from "../core/http/request-check.ts";
import type { HeaderReader } from "../core/http/http.ts";
import { emptyScan, headerReader, lowercased, scanFields, type RequestScan } from "./request-fields.ts";
import { personalCookies } from "../core/http/cookies.ts";
import type { Metrics, Tally } from "../core/admin/metrics.ts";
import { freshHit, freshHitUntil, UrlTargets, type UrlTarget } from "../core/http/fresh-hit.ts";
import type { PurgeSnapshot } from "../core/admin/purge.ts";
import type { LruStore } from "../core/store/lru-store.ts";
import { forwardPolicy, selectingView, type ForwardPolicy } from "../core/origin/forward.ts";
import { JoinedAnswers, keepAnswer, writeKept, type KeptAnswer } from "./kept-answer.ts";

export interface HitPathOptions {
  config: Config;
  clock: Clock;
  near: LruStore;
  metrics: Metrics;
  /** Undefined when the copy is past its bound: the engine answers, after a read. */
  purges: { copy(): PurgeSnapshot | undefined };
}

/**
 * The URL the engine sees for a Node request (core `targetUrl`: absolute-form targets keep
 * their own host and scheme, `//x/p` is a path), its scheme the client's ({@link clientScheme}).
 * Throws for a target the handler refuses first.
 */
export function requestUrl(req: IncomingMessage, scheme: Scheme = "http:"): URL {
  const url = targetUrl(req.url ?? "/", req.headers.host ?? "localhost", scheme);
  if (!url) throw new Error(`invalid request-target ${req.url}`);
  return url;
}

/**
 * Whether the proxy in front says which scheme the client used: `origin.trustForwardedProto`,
 * or `origin.forwardedHeaders: false`, where that proxy owns the X-Forwarded-* headers.
 */
export function trustsForwardedProto(config: Config): boolean {
  return config.origin.trustForwardedProto || !config.origin.forwardedHeaders;
}

/**
 * The scheme a Node request came in by, which its page is keyed and fetched by: the first
 * `X-Forwarded-Proto` entry when the proxy in front is trusted to write it (`forwardedProto`,
 * the field's value), else the socket's own (TLS in a server embedding the handler). Behind a
 * TLS-terminating load balancer every request reaches herdless over plain HTTP: keyed and
 * fetched as `http:`, an origin that redirects http to https answered every visitor with
 * that redirect, the page stored under it (a redirect loop). A forged value only keys its
 * sender's request apart: nobody else's page is stored under the scheme it names.
 */
export function clientScheme(req: IncomingMessage, trusted: boolean, forwardedProto: string | undefined): Scheme {
  const forwarded = trusted ? forwardedScheme(forwardedProto) : undefined;
  return forwarded ?? ((req.socket as { encrypted?: boolean }).encrypted === true ? "https:" : "http:");
}

/** What a fresh entry's hits are written with, kept while they stay the same. */
interface PreparedHit {
  entry: Entry;
  /** Until when the entry is still a fresh hit (freshHitUntil), for this route and these purges. */
  until: number;
  route: RoutePolicy | undefined;
  purges: PurgeSnapshot | undefined;
  /** Age and the Cache-Status ttl the header list was built for. */
  age: number;
  ttl: number;
  /** `hitHeaders` as `[name, value, name, value, …]`, Node's flat form. */
  flat: string[];
  /** What Node wrote for `flat` and `body` on a keep-alive connection, written again by the next hits. */
  answer: KeptAnswer | undefined;
  /** The body as a Buffer view (no copy), so Node does not wrap the Uint8Array on every write. */
  body: Buffer;
  /** Where its hits are counted: an increment per hit, folded into the metrics when they are read. */
  tally: Tally;
}

/**
 * The cache-hit path of the Node server: a fresh entry in the process LRU is written
 * straight to the socket, synchronously, with no Web `Response` and no promise. It makes the
 * engine's own decision (route, key, Vary, `decide`, purges: `freshHit`) and answers only
 * `fresh`; anything else returns false and the engine answers. The bytes on the wire are
 * those of `fromEntry` (the server test compares both paths).
 *
 * A plain request (see {@link scanFields}) for an entry without Vary takes the short way:
 * the decision made for the entry is kept with its header list and body until the entry
 * turns stale or enters its refresh-ahead window, a purge lands, or a second passes (Age
 * and ttl change). Such a hit costs two memo lookups, the store's, the write, and an
 * increment on its tally (the metrics fold it in when read, {@link Metrics.countOn}).
 *
 * @example
 * const hits = new HitPath({ config, clock, near, metrics, purges });
 * if (!hits.serve(req, res)) await engine.handle(toEngineRequest(req));
 */
export class HitPath {
  /** Targets memoized per scheme: no scheme joined into a memo key per request. */
  private readonly targets: UrlTargets;
  private readonly secureTargets: UrlTargets;
  private readonly trusted: boolean;
  private readonly prepared = new WeakMap<Entry, PreparedHit>();
  private readonly scan = emptyScan();
  private readonly forward: ForwardPolicy;
  private readonly joined = new JoinedAnswers();

  constructor(private readonly o: HitPathOptions) {
    this.targets = new UrlTargets(o.config);
    this.secureTargets = new UrlTargets(o.config);
    this.trusted = trustsForwardedProto(o.config);
    this.forward = forwardPolicy(o.config);
  }

  /**
   * Writes a fresh hit and returns true; false when the engine must answer. `startedAt`, a
   * reading of `metrics.started()` when the request arrived, times it for the histograms;
   * `scan`, the request's {@link scanFields} when the caller made it already.
   */
  serve(req: IncomingMessage, res: ServerResponse, startedAt?: number, scan?: RequestScan): boolean {
    const method = req.method;
    if (method !== "GET" && method !== "HEAD") return false;
    const fields = scan ?? scanFields(req.rawHeaders, this.scan);
    const target = this.target(fields, req);
    if (!target) return false;
    const now = this.o.clock.now();
    let hit: PreparedHit | undefined;
    if (fields.plain) {
      // The hit path's clock is the store's (both the stack's): one reading serves both.
      const entry = this.o.near.getSync(target.primary, now);
      if (!entry) return false;
      // A variant is chosen by request fields: the general way reads them.
      if (entry.vary.length === 0) {
        hit = this.plainHit(entry, target, now);
        if (!hit) return false;
      }
    }
    if (!hit) {
      const entry = this.generalHit(req, target, now);
      if (!entry) return false;
      hit = this.prepared.get(entry) ?? this.prepare(entry, target.primary);
    }
    const { entry, tally } = hit;
    this.withHeadersFor(hit, now);
    if (hit.answer === undefined || !writeKept(res, hit.answer, hit.body, method === "HEAD")) {
      res.writeHead(entry.status, hit.flat);
      if (method === "GET" && hit.answer === undefined) this.keep(hit, res, now);
      if (method === "HEAD") res.end();
      else res.end(hit.body);
    }
    // An entry is found under one primary key (key.ts: keys cannot collide); counted apart if ever not.
    if (tally.key === target.primary) this.o.metrics.countOn(tally, now, startedAt);
    else this.o.metrics.count(tally.kind, target.primary, startedAt, now);
    return true;
  }

  /** Keeps what `writeHead` just wrote on `res` for `hit`'s next hits, when it may be ({@link keepAnswer}). */
  private keep(hit: PreparedHit, res: ServerResponse, now: number): void {
    hit.answer = keepAnswer(res, hit.entry.status, hit.flat, hit.body);
    if (hit.answer) this.joined.join(hit.answer, hit.body, now);
  }

  /** A plain request's hit: the kept decision while it holds, else `freshHit` decides again and it is kept. */
  private plainHit(entry: Entry, target: UrlTarget, now: number): PreparedHit | undefined {
    const purges = this.o.purges.copy();
    if (!purges) return undefined;
    const { route } = target;
    let kept = this.prepared.get(entry);
    if (kept && now < kept.until && kept.purges === purges && kept.route === route) return kept;
    const facts = { method: "GET", hasAuthorization: false, hasCookie: false };
    if (freshHit(this.o.near, route, target.primary, facts, NO_REQUEST_FIELDS, purges, now) !== entry) return undefined;
    kept ??= this.prepare(entry, target.primary);
    kept.until = freshHitUntil(entry, route);
    kept.route = route;
    kept.purges = purges;
    return kept;
  }

  /** Any other request: `freshHit` with Node's parsed headers. */
  private generalHit(req: IncomingMessage, target: UrlTarget, now: number): Entry | undefined {
    const purges = this.o.purges.copy();
    if (!purges) return undefined;
    const headers = req.headers;
    const facts = {
      method: req.method!,
      hasAuthorization: headers.authorization !== undefined,
      hasCookie: personalCookies(headers.cookie, this.o.config.cache.ignoreCookies),
    };
    const selecting = selectingView(lowercased(req.rawHeaders), this.forward, {
      credentials: target.route.cacheAuthorized || facts.hasAuthorization,
      url: target.url,
      clientAddress: req.socket.remoteAddress,
    });
    const fields = { client: headerReader(headers, req.rawHeaders), selecting };
    return freshHit(this.o.near, target.route, target.primary, facts, fields, purges, now);
  }

  /**
   * A prepared hit for `entry`, found under the primary key `primary`, kept as long as the
   * entry lives; its decision is not made yet (`until` 0).
   */
  private prepare(entry: Entry, primary: string): PreparedHit {
    const body = Buffer.from(entry.body.buffer, entry.body.byteOffset, entry.body.byteLength);
    const tally = this.o.metrics.tally(entry.negative ? "negative" : "hit", primary);
    const kept: PreparedHit = {
      entry,
      until: 0,
      route: undefined,
      purges: undefined,
      age: -1,
      ttl: 0,
      flat: [],
      answer: undefined,
      body,
      tally,
    };
    this.prepared.set(entry, kept);
    return kept;
  }

  /** Brings `kept`'s header list to `now`'s Age and ttl (a new list once a second at most). */
  private withHeadersFor(kept: PreparedHit, now: number): void {
    const { entry } = kept;
    const age = ageSeconds(entry, now);
    const ttl = ttlSeconds(staleSince(entry), now);
    if (age === kept.age && ttl === kept.ttl) return;
    kept.flat = hitHeaders(entry, now).flat();
    kept.answer = undefined;
    kept.age = age;
    kept.ttl = ttl;
  }

  private target(fields: RequestScan, req: IncomingMessage): UrlTarget | undefined {
    const hostName = fields.host ?? "localhost";
    const requestTarget = req.url ?? "/";
    const scheme = clientScheme(req, this.trusted, fields.proto);
    const targets = scheme === "https:" ? this.secureTargets : this.targets;
    // A remembered target first: the parser's closure is made only for a target not seen yet.
    const known = targets.knownForHost(hostName, requestTarget);
    if (known) return known;
    try {
      return targets.forHost(hostName, requestTarget, () => requestUrl(req, scheme));
    } catch {
      return undefined;
    }
  }
}

/** The fields of a plain request, as `freshHit` reads them: none that matter (its entry has no Vary). */
const NO_FIELDS: HeaderReader = { get: () => null };
const NO_REQUEST_FIELDS = { client: NO_FIELDS, selecting: NO_FIELDS };
