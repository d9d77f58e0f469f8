import { HerdlessError, isHerdlessError } from "../errors.ts";
import { isValidField } from "../origin/response-fields.ts";
import { HOP_BY_HOP } from "./http.ts";

/** The serialization format of {@link Entry}; bumped on every incompatible change (2: structured variant keys). */
export const ENTRY_FORMAT_VERSION = 2;

/**
 * A stored response. Every instant is absolute epoch-ms, computed once by the freshness
 * policy when the response arrives, so stores and edges only compare numbers.
 *
 *   storedAt ≤ staleAt ≤ swrUntil, sieUntil ≤ deleteAt
 *
 * - fresh while `now < staleAt`;
 * - servable stale while revalidating in the background while `now < swrUntil`;
 * - servable stale when the origin fails while `now < sieUntil`;
 * - physically kept (for conditional revalidation and breaker-open serving) until `deleteAt`.
 */
export interface Entry {
  v: typeof ENTRY_FORMAT_VERSION;
  /** The full cache key, including the Vary-selected part. */
  key: string;
  url: string;
  status: number;
  /** Response headers to replay, names lowercased, hop-by-hop headers removed. */
  headers: [string, string][];
  body: Uint8Array;
  /** When the request that produced this response was sent (RFC 9111 §4.2.3 request_time). */
  requestAt: number;
  /** When the response arrived (response_time). */
  storedAt: number;
  /** corrected_initial_age of RFC 9111 §4.2.3, in ms. */
  initialAgeMs: number;
  staleAt: number;
  /**
   * Only on a response that arrived already stale (its Age past its freshness lifetime): the
   * instant it went stale, before it arrived; `staleAt` is then its arrival. Read for
   * Cache-Status's ttl alone ({@link staleSince}).
   */
  expiredAt?: number;
  swrUntil: number;
  sieUntil: number;
  deleteAt: number;
  etag?: string;
  lastModified?: string;
  /** Request header names (lowercased) from the response's Vary, sorted. */
  vary: string[];
  /** `must-revalidate`/`proxy-revalidate`/`no-cache`: never served stale, whatever the config. */
  mustRevalidate: boolean;
  /** Fencing token of the lease under which the entry was written; higher is newer. */
  token: number;
  /** Purge tags from Cache-Tag / Surrogate-Key. */
  tags: string[];
  /** True for a short-lived cached error (negative caching). */
  negative: boolean;
  /**
   * On the entry under a primary key (the response itself, or a Vary pointer): responses for
   * the URL stored at or before this instant were invalidated by a successful unsafe request
   * (RFC 9111 §4.4) and are never served, whichever variant they are (lookup.ts).
   */
  invalidatedAt?: number;
  /**
   * On a Vary pointer: each request header (not one key.ts implies) that a variant stored
   * under it named in its own `Vary`, with the latest instant such a variant may still be
   * stored (its `deleteAt`). Until then a new answer for the URL is selected on that header
   * too, whatever its own `Vary` says (key.ts keptSelectors).
   */
  namedUntil?: [string, number][];
  /** On an unconfirmed error only (asked-by.ts): the digest of its fill's header fields; it answers no other request. */
  askedBy?: string;
}

/**
 * What a client's preconditions and Range are judged against (RFC 9110 §13, §14): a stored
 * entry's head, or the origin's answer a fill could not share (answer.ts answerFromPass).
 */
export type Representation = Pick<Entry, "status" | "headers" | "etag" | "lastModified" | "storedAt" | "negative">;

/**
 * `entry`, unless its URL was invalidated after it was stored: `atPrimary` (the entry under
 * the URL's primary key, the response itself or its Vary pointer) says since when
 * (`invalidatedAt`). Every lookup of a stored response goes through this.
 */
export function notInvalidated(entry: Entry | undefined, atPrimary: Entry | undefined): Entry | undefined {
  if (!entry || atPrimary?.invalidatedAt === undefined) return entry;
  // Stored in the very millisecond of the write, it may predate it: it goes too.
  return entry.storedAt > atPrimary.invalidatedAt ? entry : undefined;
}

/**
 * When `entry` went stale, as Cache-Status's ttl counts it (RFC 9211 §2.4: the freshness
 * lifetime left, negative once stale): `staleAt`, or, for a response that arrived already
 * stale, the instant before its arrival it went stale (`expiredAt`). An origin's
 * `max-age=60` with `Age: 100` is 40 seconds stale when it arrives, not 0. Not once a writer
 * moved `staleAt` past the arrival (a cached 404's own lifetime): that instant counts then.
 *
 * @example
 * ttlSeconds(staleSince(entry), now); // -40 for max-age=60, Age: 100, just arrived
 */
export function staleSince(entry: Pick<Entry, "staleAt" | "storedAt" | "expiredAt">): number {
  const { expiredAt, staleAt, storedAt } = entry;
  return expiredAt !== undefined && staleAt <= storedAt ? Math.min(expiredAt, staleAt) : staleAt;
}

/** Current age of an entry in whole seconds, for the Age header (RFC 9111 §4.2.3). */
export function ageSeconds(entry: Pick<Entry, "initialAgeMs" | "storedAt">, now: number): number {
  return Math.max(0, Math.floor((entry.initialAgeMs + (now - entry.storedAt)) / 1000));
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Binary form for stores that keep bytes (Redis, Durable Object storage):
 * 4-byte big-endian metadata length, JSON metadata (with `v`), then the body.
 */
export function encodeEntry(entry: Entry): Uint8Array {
  const { body, ...meta } = entry;
  const metaBytes = encoder.encode(JSON.stringify(meta));
  const out = new Uint8Array(4 + metaBytes.length + body.length);
  new DataView(out.buffer).setUint32(0, metaBytes.length);
  out.set(metaBytes, 4);
  out.set(body, 4 + metaBytes.length);
  return out;
}

/** Inverse of {@link encodeEntry}; refuses unknown versions and damaged input. */
export function decodeEntry(bytes: Uint8Array): Entry {
  if (bytes.length < 4) throw new HerdlessError("ENTRY_CORRUPT", "stored entry is shorter than its header");
  const metaLength = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  if (4 + metaLength > bytes.length)
    throw new HerdlessError("ENTRY_CORRUPT", "stored entry metadata runs past its end");
  const meta = decodeEntryMeta(decoder.decode(bytes.subarray(4, 4 + metaLength)));
  return { ...meta, body: bytes.slice(4 + metaLength) };
}

/**
 * Entry metadata JSON, or undefined when it is no entry this herdless reads: another format
 * version (a gradual deployment or a rollback runs two herdless versions over one cache) or
 * damage. A store answers that as a miss: thrown, it failed every request for the key (on the
 * Worker, an uncaught exception) until the entry expired.
 */
export function readableEntryMeta(json: string): Omit<Entry, "body"> | undefined {
  try {
    return decodeEntryMeta(json);
  } catch (error) {
    if (isUnreadableEntry(error)) return undefined;
    throw error;
  }
}

/** Whether `error` says stored bytes are no entry this herdless reads (see {@link readableEntryMeta}). */
export function isUnreadableEntry(error: unknown): boolean {
  return isHerdlessError(error, "ENTRY_VERSION") || isHerdlessError(error, "ENTRY_CORRUPT");
}

/** Parses entry metadata JSON (everything but the body), refusing unknown versions. */
export function decodeEntryMeta(json: string): Omit<Entry, "body"> {
  let meta: unknown;
  try {
    meta = JSON.parse(json);
  } catch (cause) {
    throw new HerdlessError("ENTRY_CORRUPT", "stored entry metadata is not JSON", { cause });
  }
  if (typeof meta !== "object" || meta === null || !("v" in meta)) {
    throw new HerdlessError("ENTRY_CORRUPT", "stored entry metadata has no format version");
  }
  if (meta.v !== ENTRY_FORMAT_VERSION) {
    throw new HerdlessError(
      "ENTRY_VERSION",
      `stored entry has format version ${String(meta.v)}, this herdless reads ${ENTRY_FORMAT_VERSION}`,
    );
  }
  const fault = metaFault(meta as Record<string, unknown>);
  if (fault) throw new HerdlessError("ENTRY_CORRUPT", `stored entry metadata is damaged: ${fault}`);
  return meta as Omit<Entry, "body">;
}

const NUMBER_FIELDS = [
  "requestAt",
  "storedAt",
  "initialAgeMs",
  "staleAt",
  "swrUntil",
  "sieUntil",
  "deleteAt",
  "token",
] as const;

/**
 * What is wrong with metadata of the current version, or undefined. A shared store holds
 * what any member wrote (a damaged write, a hand edit, a build with a bug): a field of the
 * wrong type would fail every request for the key with a 500 until the entry expired
 * (`headers: "x"`, `status: 99`), so such an entry is refused here and read as a miss.
 */
function metaFault(meta: Record<string, unknown>): string | undefined {
  if (typeof meta["key"] !== "string" || typeof meta["url"] !== "string") return "key and url must be strings";
  const status = meta["status"];
  if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599)
    return `status ${String(status)} is not a final status`;
  for (const name of NUMBER_FIELDS) {
    if (typeof meta[name] !== "number" || !Number.isFinite(meta[name])) return `${name} is not a finite number`;
  }
  if (NEVER_STORED_STATUSES.has(status)) return `status ${status} is never stored`;
  const headers = meta["headers"];
  if (!Array.isArray(headers) || !headers.every(isField)) return "headers is not a list of [name, value] strings";
  const unstored = (headers as [string, string][]).find(([name, value]) => !isStoredField(name, value));
  if (unstored) return `header ${JSON.stringify(unstored[0])} is never stored so`;
  if (!isStringList(meta["vary"]) || !isStringList(meta["tags"])) return "vary and tags must be lists of strings";
  if (typeof meta["mustRevalidate"] !== "boolean" || typeof meta["negative"] !== "boolean")
    return "mustRevalidate and negative must be booleans";
  const from = meta["invalidatedAt"];
  if (from !== undefined && (typeof from !== "number" || !Number.isFinite(from)))
    return "invalidatedAt is not a finite number";
  const expired = meta["expiredAt"];
  if (expired !== undefined && (typeof expired !== "number" || !Number.isFinite(expired)))
    return "expiredAt is not a finite number";
  const named = meta["namedUntil"];
  if (named !== undefined && !(Array.isArray(named) && named.every(isNamedUntil)))
    return "namedUntil is not a list of [name, instant]";
  for (const name of ["etag", "lastModified", "askedBy"] as const) {
    if (meta[name] !== undefined && typeof meta[name] !== "string") return `${name} is not a string`;
  }
  return undefined;
}

/** Statuses no entry has (storability.ts): a part of a page, a delta, a validation answer. */
const NEVER_STORED_STATUSES: ReadonlySet<number> = new Set([206, 226, 304]);
/** Fields an entry never holds: dropped on arrival (response-fields.ts) or before storing (storability.ts storedFields). */
const NEVER_STORED_FIELDS: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP,
  "content-length",
  "age",
  "set-cookie",
  "authentication-info",
]);

/**
 * A field as an entry holds it: its name lowercased, valid as the origin's was on arrival, and
 * one herdless keeps. Served from an entry that held it otherwise (a hand edit, another app's
 * write in a fleet's Redis), `Set-Cookie` (spelled so) was replayed to every visitor, a second
 * `Content-Length` or a `Transfer-Encoding` framed the answer two ways (a desync for a proxy in
 * front), a `Connection` kept open what herdless closed, and an invalid name or value failed
 * every request of the page with a `500`.
 */
function isStoredField(name: string, value: string): boolean {
  return name === name.toLowerCase() && isValidField(name, value) && !NEVER_STORED_FIELDS.has(name);
}

function isField(field: unknown): boolean {
  return Array.isArray(field) && field.length === 2 && typeof field[0] === "string" && typeof field[1] === "string";
}

function isNamedUntil(pair: unknown): boolean {
  return Array.isArray(pair) && pair.length === 2 && typeof pair[0] === "string" && Number.isFinite(pair[1]);
}

function isStringList(value: unknown): boolean {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

/** Metadata and body of an entry stored apart (Cache API headers, DO storage). */
export function entryMeta(entry: Entry): Omit<Entry, "body"> {
  const { body: _body, ...meta } = entry;
  return meta;
}

/**
 * What one entry held in memory costs beyond its bytes of text: the Entry object, its Map
 * slot, the body's Uint8Array and ArrayBuffer objects and allocation, the vary and tag
 * arrays, and the hit headers memoized for it. Measured on Node 20 (V8 heap and array
 * buffers after a full GC, 20,000 entries with a 200-byte body and 4 headers): 1,710 bytes
 * an entry, which this model charges as ~1,830 (it charged 687 when this was 256, so a
 * 64 MiB budget held 2.5 times that much).
 */
const ENTRY_OVERHEAD_BYTES = 1_000;
/** One stored header: its [name, value] array (~64 bytes) and two string headers (~20 each). */
const HEADER_OVERHEAD_BYTES = 104;
/** One string (key, url, a vary name, a tag): its header. */
const STRING_OVERHEAD_BYTES = 20;

/** The size an entry charges against a byte budget: what it really occupies in memory, body included. */
export function entrySize(entry: Entry): number {
  let size =
    entry.body.byteLength + ENTRY_OVERHEAD_BYTES + entry.key.length + entry.url.length + 2 * STRING_OVERHEAD_BYTES;
  for (const [name, value] of entry.headers) size += name.length + value.length + HEADER_OVERHEAD_BYTES;
  for (const name of entry.vary) size += name.length + STRING_OVERHEAD_BYTES;
  for (const [name] of entry.namedUntil ?? []) size += name.length + HEADER_OVERHEAD_BYTES;
  for (const tag of entry.tags) size += tag.length + STRING_OVERHEAD_BYTES;
  return size;
}

/** Whether `entry` was written after `than` (by a later flight): by fencing token, then arrival. */
export function writtenAfter(entry: Entry | undefined, than: Entry | undefined): boolean {
  if (!entry) return false;
  if (!than) return true;
  return entry.token > than.token || entry.storedAt > than.storedAt;
}
