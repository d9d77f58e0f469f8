import type { Config, RoutePolicy } from "../config.ts";
import { ENTRY_FORMAT_VERSION, type Entry } from "./entry.ts";
import { governingDirectives, hasExplicitFreshness, lifetimes } from "./freshness.ts";
import { parseHttpDate } from "./http-date.ts";
import { parseEntityTag, weakMatch } from "./conditional.ts";
import { requesterOnlyFields, storedFields } from "./storability.ts";
import { headerList, type HeaderReader } from "./http.ts";
import { namedUntil, selectingNames, variantKey } from "./key.ts";

export interface EntryContext {
  primary: string;
  url: string;
  /** The headers of the request that was sent to the origin (Vary selects on them). */
  requestHeaders: HeaderReader;
  route: RoutePolicy;
  config: Config;
  token: number;
  /** Selectors the URL's stored copies already have that the response may not show (key.ts keptSelectors). */
  keptSelectors?: readonly string[];
}

interface ResponseFacts {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
  requestAt: number;
  responseAt: number;
}

/**
 * Builds the entry to store for a storable origin response. Only {@link storedFields} are
 * kept: no Set-Cookie, nothing a qualified `private`/`no-cache` names, whatever the caller
 * checked before.
 */
export function entryFromResponse(res: ResponseFacts, ctx: EntryContext): Entry {
  const headers = headerList(res.headers);
  const times = lifetimes(
    { status: res.status, headers, requestAt: res.requestAt, responseAt: res.responseAt },
    ctx.route,
    ctx.config,
  );
  const vary = selectingNames(headers, ctx.keptSelectors);
  return {
    v: ENTRY_FORMAT_VERSION,
    key: variantKey(ctx.primary, vary, ctx.requestHeaders),
    url: ctx.url,
    status: res.status,
    headers: storedFields(res.headers).filter(([name]) => ctx.config.cache.exposeTagHeaders || !TAG_HEADERS.has(name)),
    body: res.body,
    requestAt: res.requestAt,
    storedAt: res.responseAt,
    ...times,
    ...validators(headers),
    vary,
    token: ctx.token,
    tags: purgeTags(headers),
    negative: false,
  };
}

/**
 * What the answer to the request that made a fill carries beside the entry's headers: the
 * fields a qualified `no-cache` or `private` keeps out of the entry ({@link requesterOnlyFields}),
 * tag headers consumed as the entry consumes them. `headers` is the response the entry is made
 * of (a 304's merged with the stored headers: the stored ones never hold such a field).
 *
 * @example
 * const own = requesterFields([["cache-control", 'max-age=60, no-cache="x-a"'], ["x-a", "1"]], config); // [["x-a", "1"]]
 */
export function requesterFields(headers: readonly [string, string][], config: Config): [string, string][] {
  return requesterOnlyFields(headers).filter(([name]) => config.cache.exposeTagHeaders || !TAG_HEADERS.has(name));
}

/**
 * RFC 9111 §4.3.4: the response a 304 makes of a stored one: the stored headers updated by
 * the 304's (except the ones describing the body), the stored status and body. The caller
 * judges its storability like any response: a 304 can make it private, no-store or
 * `Vary: *`, and its Set-Cookie belongs to the one client that asked. A stored weak tag
 * stays weak when the 304 names the same tag strong: the copy was weakened because its bytes
 * are not the origin's (a body the runtime decoded, one nginx gzipped), which a 304 does not
 * change.
 *
 * @example
 * const merged = revalidatedHeaders(stored, [["cache-control", "max-age=60"]]);
 */
export function revalidatedHeaders(stored: Entry, notModified: readonly [string, string][]): [string, string][] {
  const updates = new Map<string, [string, string][]>();
  for (const pair of notModified) {
    if (BODY_DESCRIBING.has(pair[0]) || (pair[0] === "etag" && stored.etag === `W/${pair[1].trim()}`)) continue;
    updates.set(pair[0], [...(updates.get(pair[0]) ?? []), pair]);
  }
  return [...stored.headers.filter(([name]) => !updates.has(name)), ...[...updates.values()].flat()];
}

/**
 * RFC 9111 §4.3.4: whether a 304 vouches for the stored response. Its entity-tag must be the
 * stored one, compared weakly (nginx weakens the tag of a body it gzips, never of a 304:
 * `W/"abc"` stored, `"abc"` in the 304, the same representation); without an entity-tag, a
 * Last-Modified must be the stored one. Otherwise the 304 is about another representation
 * (the origin changed the page and compared `If-Modified-Since` alone, say), and the cache
 * "MUST NOT use the new response to update any stored responses": the old body would be
 * served labelled as the new one, and clients revalidating with that label would keep it.
 * A 304 with no validator at all (as many origins send) vouches for the copy it was asked about.
 *
 * @example
 * notModifiedSelects(stored, [["etag", '"v2"']]); // false when the stored ETag is "v1"
 */
export function notModifiedSelects(stored: Entry, notModified: readonly [string, string][]): boolean {
  const headers = headerList(notModified);
  const etag = headers.get("etag");
  if (etag !== null) {
    const given = parseEntityTag(etag);
    const mine = stored.etag === undefined ? undefined : parseEntityTag(stored.etag);
    return given !== undefined && mine !== undefined && weakMatch(given, mine);
  }
  const lastModified = headers.get("last-modified");
  if (lastModified === null) return true;
  const at = parseHttpDate(lastModified);
  return at !== undefined && at === parseHttpDate(stored.lastModified ?? null);
}

/**
 * The entry a 304 refreshes (RFC 9111 §4.3.4): {@link revalidatedHeaders} and new
 * freshness, the body kept as is. Only for a merged response found storable.
 */
export function refreshedEntry(stored: Entry, res: Omit<ResponseFacts, "body">, ctx: EntryContext): Entry {
  const merged = revalidatedHeaders(stored, res.headers);
  const rebuilt = entryFromResponse({ ...res, status: stored.status, headers: merged, body: stored.body }, ctx);
  // The 304 answered for the stored variant; keep its key even if the request headers differ.
  // Tag headers are consumed, not stored: a 304 without them keeps the stored tags.
  const tags = res.headers.some(([name]) => TAG_HEADERS.has(name)) ? rebuilt.tags : stored.tags;
  // A 304 to the request an unconfirmed error answered (asked-by.ts) confirms nothing: it stays that request's.
  const asked = stored.askedBy !== undefined ? { askedBy: stored.askedBy } : {};
  return { ...rebuilt, key: stored.key, vary: stored.vary, tags, ...asked };
}

const BODY_DESCRIBING = new Set([
  "content-length",
  "content-encoding",
  "content-type",
  "content-range",
  "transfer-encoding",
]);

/** A short-lived cached error, so a failing URL does not become a stream of origin requests. */
export function negativeEntry(
  key: string,
  url: string,
  res: { status: number; headers: [string, string][]; body: Uint8Array },
  ttlMs: number,
  now: number,
  token: number,
): Entry {
  return {
    v: ENTRY_FORMAT_VERSION,
    key,
    url,
    status: res.status,
    headers: res.headers.filter(([name]) => name === "content-type" || name === "retry-after"),
    body: res.body,
    requestAt: now,
    storedAt: now,
    initialAgeMs: 0,
    staleAt: now + ttlMs,
    swrUntil: now + ttlMs,
    sieUntil: now + ttlMs,
    deleteAt: now + ttlMs,
    vary: [],
    mustRevalidate: true,
    token,
    tags: [],
    negative: true,
  };
}

/**
 * A copy of `entry` (a variant) stored under the primary key, so a later request learns which
 * headers select its variant. From `previous` (what the primary key held) it keeps the instant
 * the URL was last invalidated and the headers its variants named ({@link namedUntil}).
 */
export function varyPointer(entry: Entry, primary: string, previous?: Entry): Entry {
  // A pointer stands for every variant of the URL: an unconfirmed error's mark (asked-by.ts) is its own alone.
  const { invalidatedAt: _own, namedUntil: _named, askedBy: _asked, ...rest } = entry;
  const invalidatedAt = previous?.invalidatedAt;
  const named = namedUntil(entry, previous);
  return {
    ...rest,
    key: primary,
    body: new Uint8Array(0),
    ...(invalidatedAt !== undefined ? { invalidatedAt } : {}),
    ...(named.length > 0 ? { namedUntil: named } : {}),
  };
}

function validators(headers: HeaderReader): Pick<Entry, "etag" | "lastModified"> {
  const out: Pick<Entry, "etag" | "lastModified"> = {};
  const etag = headers.get("etag");
  if (etag) out.etag = etag;
  const lastModified = headers.get("last-modified");
  if (lastModified && parseHttpDate(lastModified) !== undefined) out.lastModified = lastModified;
  return out;
}

/** Headers that carry purge tags: herdless consumes them (`cache.exposeTagHeaders` shows them to clients). */
export const TAG_HEADERS: ReadonlySet<string> = new Set(["cache-tag", "surrogate-key"]);

/** Purge tags: comma-separated Cache-Tag and space-separated Surrogate-Key. */
export function purgeTags(headers: HeaderReader): string[] {
  const tags = new Set<string>();
  for (const tag of (headers.get("cache-tag") ?? "").split(",")) if (tag.trim()) tags.add(tag.trim());
  for (const tag of (headers.get("surrogate-key") ?? "").split(/\s+/)) if (tag) tags.add(tag);
  return [...tags];
}

/** Conditional request headers for revalidating a stored entry (RFC 9110 §13.1). */
export function conditionalHeaders(stored: Entry | undefined): [string, string][] {
  if (!stored || stored.negative) return [];
  const out: [string, string][] = [];
  if (stored.etag) out.push(["if-none-match", stored.etag]);
  if (stored.lastModified) out.push(["if-modified-since", stored.lastModified]);
  return out;
}

/** `origin.notFoundTtlMs`: a 404 the origin gave no lifetime is kept that long. */
export function withNotFoundTtl(
  entry: Entry,
  fields: readonly (readonly [string, string])[],
  config: Config,
  now: number,
): Entry {
  if (entry.status !== 404 || config.origin.notFoundTtlMs <= 0 || entry.staleAt > now) return entry;
  // Only a 404 that says nothing of its lifetime: one the origin gave a spent one (`max-age=0`,
  // an `Age` past its max-age, `Expires` at its Date) or marked `no-cache` is stale as it says
  // (RFC 9111 §4.2.1, §5.2.2.4), not fresh for notFoundTtlMs.
  const headers = headerList(fields);
  const governing = governingDirectives(headers);
  if (hasExplicitFreshness(headers, governing) || governing.d.has("no-cache")) return entry;
  const staleAt = now + config.origin.notFoundTtlMs;
  return { ...entry, staleAt, swrUntil: staleAt, sieUntil: staleAt, deleteAt: staleAt + config.cache.retainStaleMs };
}
