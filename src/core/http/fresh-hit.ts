import { routeFor, type Config, type RoutePolicy } from "../config.ts";
import { decide, type Decision, type RequestFacts } from "./decision.ts";
import { notInvalidated, type Entry } from "./entry.ts";
import type { HeaderReader } from "./http.ts";
import { primaryKey, variantKey } from "./key.ts";
import { purgeVerdict, type PurgeSnapshot } from "../admin/purge.ts";
import { needsFullAnswer } from "./request-directives.ts";
import { refreshAheadDue, refreshAheadFrom, renewedAhead } from "../fill/refresh-ahead.ts";

/** A store that can answer without a promise: the in-memory tier. */
export interface SyncStore {
  getSync(key: string): Entry | undefined;
}

/**
 * The hit path's question, without a promise: does the in-memory tier hold a fresh entry
 * this request may be served from? The same answer as the engine's flow (variant by Vary,
 * credentials and route via `decide`, purges); anything else, or a request with a precondition
 * or a Range, or an entry in its refresh-ahead window, undefined, and the engine answers. Runtimes use it to write hits straight out, with no engine per request.
 *
 * @example
 * const hit = freshHit(memory, route, primary, { method, hasAuthorization, hasCookie }, headers, purges, clock.now());
 */
export function freshHit(
  near: SyncStore,
  route: RoutePolicy,
  primary: string,
  facts: RequestFacts,
  headers: RequestFields,
  purges: PurgeSnapshot | undefined,
  now: number,
): Entry | undefined {
  return memoryAnswer(near, route, primary, facts, headers, purges, now, NOTHING_REFRESHING)?.entry;
}

/**
 * A request's header fields as the hit paths read them: the client's own (`client`: its
 * preconditions and Range), and the view a variant is selected by (`selecting`: the headers a
 * fill of the request sends, forward.ts selectingView).
 */
export interface RequestFields {
  client: HeaderReader;
  selecting: HeaderReader;
}

/** The refreshes an edge runs behind its answers (core/fill/refresh-marks.ts). */
export interface RefreshingKeys {
  /** Whether this edge is refreshing `key` now. */
  running(key: string, now: number): boolean;
  /** The expiry of the copy a running refresh-ahead of `key` renews (refresh-ahead.ts renewedAhead). */
  renewing(key: string, now: number): number | undefined;
}

const NOTHING_REFRESHING: RefreshingKeys = { running: () => false, renewing: () => undefined };

/** An answer from memory: a fresh hit, or a copy served while this edge's refresh of it runs. */
export interface MemoryAnswer {
  entry: Entry;
  detail?: "refresh-ahead" | "stale-while-revalidate";
}

/**
 * {@link freshHit}, and the answers the engine gives from its copy while this edge already
 * refreshes the key (so the request would start nothing): a fresh copy in its refresh-ahead
 * window (`detail: "refresh-ahead"`), a stale one within stale-while-revalidate, and one that
 * expired while a refresh-ahead renews it (`renewedAhead`). Under a spike on an expiring key,
 * the first request of an edge starts the refresh through the engine and every other one is
 * answered here, with no engine built for it. Anything else, undefined: the engine answers.
 *
 * @example
 * const answer = memoryAnswer(memory, route, primary, facts, headers, purges, now, refreshMarks);
 */
export function memoryAnswer(
  near: SyncStore,
  route: RoutePolicy,
  primary: string,
  facts: RequestFacts,
  headers: RequestFields,
  purges: PurgeSnapshot | undefined,
  now: number,
  refreshing: RefreshingKeys,
): MemoryAnswer | undefined {
  const atPrimary = near.getSync(primary);
  let entry = atPrimary;
  if (!entry) return undefined;
  if (needsFullAnswer(headers.client, route.honorRequestNoCache)) return undefined;
  let key = primary;
  if (entry.vary.length > 0) {
    key = variantKey(primary, entry.vary, headers.selecting);
    entry = near.getSync(key);
  }
  // A URL invalidated since (RFC 9111 §4.4): the engine asks again.
  entry = notInvalidated(entry, atPrimary);
  // An unconfirmed error (asked-by.ts) answers only a request like its own: the engine compares.
  if (!entry || entry.askedBy !== undefined) return undefined;
  if (purges && purgeVerdict(entry, primary, purges) !== "keep") return undefined;
  return servedFromCopy(decide(entry, key, facts, route, now), key, route, now, refreshing);
}

/** The engine's answer from a copy for each decision, when it needs no refresh started (engine.ts says why each). */
function servedFromCopy(
  decision: Decision,
  key: string,
  route: RoutePolicy,
  now: number,
  refreshing: RefreshingKeys,
): MemoryAnswer | undefined {
  // A cached error is served only as a plain fresh hit here; the engine answers the rest.
  if (decision.kind !== "fresh" && decision.kind !== "bypass" && decision.kind !== "miss" && decision.entry.negative)
    return undefined;
  switch (decision.kind) {
    case "fresh":
      // In its refresh-ahead window the engine answers: it starts the renewal behind the hit.
      if (!refreshAheadDue(decision.entry, route.refreshAhead, now)) return { entry: decision.entry };
      return refreshing.running(key, now) ? { entry: decision.entry, detail: "refresh-ahead" } : undefined;
    case "stale-while-revalidate":
      return refreshing.running(key, now) ? { entry: decision.entry, detail: "stale-while-revalidate" } : undefined;
    case "revalidate":
      return renewedAhead(decision.entry, route.refreshAhead, refreshing.renewing(key, now))
        ? { entry: decision.entry, detail: "stale-while-revalidate" }
        : undefined;
    default:
      return undefined;
  }
}

/**
 * Until when {@link freshHit}'s entry stays its answer, all else equal (the same route, the
 * same request facts and fields, the same purges): the entry turns stale, or enters its
 * refresh-ahead window, whichever comes first. A runtime may keep what it prepared to write
 * an entry's hits (Node: its flat header list) and skip the checks until then.
 *
 * @example
 * if (now < freshHitUntil(entry, route)) writePrepared(entry);
 */
export function freshHitUntil(entry: Entry, route: RoutePolicy): number {
  return Math.min(entry.staleAt, refreshAheadFrom(entry, route.refreshAhead));
}

/** What the request flow computes from a URL alone. */
export interface UrlTarget {
  url: URL;
  route: RoutePolicy;
  primary: string;
}

/**
 * The longest URL remembered: a memo holds its URL three times (the memo key, the parsed URL,
 * the primary key), so 1,000 URLs of 16 KiB (Node's head limit; workerd takes 128 KiB) held
 * ~50 MB (~400 MB) outside every cache budget. Longer ones, rare from visitors, are parsed
 * each time.
 */
const MEMO_MAX_CHARS = 2_048;

/**
 * URLs parsed once, with their route and primary key, for the hit paths. Bounded: past
 * `limit` distinct URLs the memory is dropped, so a flood of new URLs costs a re-parse,
 * never memory. A memo costs ~900 bytes of heap (the URL object and its strings, measured
 * on Node 20), which no cache budget charges: 10,000 of them were 8.6 MiB, an eighth of a
 * 64 MiB cache, kept through a flood where no URL is asked twice. 1,000 hold the pages hot
 * enough to matter; a page beyond them is parsed again (microseconds).
 */
export class UrlTargets {
  private readonly known = new Map<string, UrlTarget>();
  constructor(
    private readonly config: Config,
    private readonly limit = 1_000,
  ) {}

  /** Memos by Host, then request target: no string joined per request to look one up. */
  private readonly byHost = new Map<string, Map<string, UrlTarget>>();
  private byHostCount = 0;

  /** The target remembered under `memo`, or `parse()` (which may throw) worked out and remembered. */
  get(memo: string, parse: () => URL): UrlTarget {
    let target = this.known.get(memo);
    if (target) return target;
    target = this.parsed(parse);
    if (memo.length > MEMO_MAX_CHARS) return target;
    if (this.known.size >= this.limit) this.known.clear();
    this.known.set(memo, target);
    return target;
  }

  /** The target {@link forHost} remembered for `host` and `requestTarget`, if any: no parser closure to pass. */
  knownForHost(host: string, requestTarget: string): UrlTarget | undefined {
    return this.byHost.get(host)?.get(requestTarget);
  }

  /** {@link get} remembered under the Host and the request target as received, with the same bound. */
  forHost(host: string, requestTarget: string, parse: () => URL): UrlTarget {
    let targets = this.byHost.get(host);
    let target = targets?.get(requestTarget);
    if (target) return target;
    target = this.parsed(parse);
    if (host.length + requestTarget.length > MEMO_MAX_CHARS) return target;
    if (this.byHostCount >= this.limit) {
      this.byHost.clear();
      this.byHostCount = 0;
      targets = undefined;
    }
    if (!targets) this.byHost.set(host, (targets = new Map()));
    targets.set(requestTarget, target);
    this.byHostCount++;
    return target;
  }

  private parsed(parse: () => URL): UrlTarget {
    const url = parse();
    const route = routeFor(this.config, url.pathname);
    return { url, route, primary: primaryKey(url, route.key) };
  }
}
