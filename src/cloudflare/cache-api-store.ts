import type { Clock } from "../core/clock.ts";
import { entryMeta, readableEntryMeta, type Entry } from "../core/http/entry.ts";
import { askedBefore } from "../core/store/lookup.ts";
import type { Store } from "../core/store/store.ts";

/** Response header that carries the entry metadata (base64 of its UTF-8 JSON). */
export const ENTRY_META_HEADER = "x-herdless-entry";
const KEY_ORIGIN = "https://herdless.internal/";

/**
 * A {@link Store} over a Workers Cache API cache: the near tier, one per data center.
 *
 * Each entry is one cached Response under a synthetic URL. Its body is the entry body;
 * its only headers are the metadata header and `Cache-Control: max-age` = time left until
 * `deleteAt` (the physical TTL). The entry's own headers live inside the metadata, so
 * nothing `cache.put` objects to (Set-Cookie, Vary: *) ever reaches it, and the status is
 * always 200 on the wire because `cache.put` throws on 206 and 204/304 cannot carry a body.
 *
 * Fencing is read-then-write: the Cache API has no compare-and-set, so two writers in the
 * same data center can race. The coordinator object (one per key) is the real serializer;
 * this check stops late writers that arrive after a newer entry landed.
 *
 * @example
 * const store = new CacheApiStore(await caches.open("herdless"), systemClock);
 */
export class CacheApiStore implements Store {
  constructor(
    private readonly cache: Cache,
    private readonly clock: Clock,
  ) {}

  async get(key: string): Promise<Entry | undefined> {
    const res = await this.cache.match(requestFor(key));
    if (!res) return undefined;
    const meta = readMeta(res);
    // The cache expires on wall-clock seconds; the contract is on the injected clock, in ms.
    if (!meta || meta.key !== key || this.clock.now() >= meta.deleteAt) {
      await res.body?.cancel();
      if (meta && this.clock.now() >= meta.deleteAt) await this.cache.delete(requestFor(key));
      return undefined;
    }
    return { ...meta, body: new Uint8Array(await res.arrayBuffer()) };
  }

  async put(written: Entry): Promise<boolean> {
    const now = this.clock.now();
    let entry = written;
    const current = await this.cache.match(requestFor(entry.key));
    if (current) {
      const meta = readMeta(current);
      await current.body?.cancel();
      if (meta && meta.token > entry.token && now < meta.deleteAt) {
        const over = markOver(entry, meta);
        if (!over) return false;
        entry = over;
      } else if (meta && now < meta.deleteAt && overtakesMark(entry, meta)) return false;
    }
    const ttlSeconds = Math.ceil((entry.deleteAt - now) / 1000);
    // max-age=0 would not be stored anyway; an entry already past deleteAt is not written.
    if (ttlSeconds <= 0) return false;
    const res = new Response(entry.body, {
      status: 200,
      headers: {
        [ENTRY_META_HEADER]: encodeMeta(entryMeta(entry)),
        "cache-control": `max-age=${ttlSeconds}`,
        "content-type": "application/octet-stream",
      },
    });
    await this.cache.put(requestFor(entry.key), res);
    return true;
  }

  async delete(key: string): Promise<boolean> {
    return this.cache.delete(requestFor(key));
  }
}

/**
 * RFC 9111 §4.4: an invalidation's mark (`invalidatedAt`) refused by a newer copy that was
 * stored before the write: that copy, marked, to be written in its place. The mark is made from
 * the copy the writing isolate held (invalidateStored reads its memory first), which may be
 * older than the data center's: another isolate had stored a newer one (a reload, a refresh
 * ahead) and the isolate's memory had not read it again yet. Refused, the newer copy, asked
 * of the origin before the `POST`, answered as fresh to every isolate of the data center for
 * its whole lifetime. Undefined when `entry` is no mark or `held` was stored after the write.
 */
function markOver(entry: Entry, held: Omit<Entry, "body">): Entry | undefined {
  const at = entry.invalidatedAt;
  if (at === undefined || held.storedAt > at) return undefined;
  const invalidatedAt = Math.max(at, held.invalidatedAt ?? at);
  return { ...held, body: new Uint8Array(0), invalidatedAt, deleteAt: Math.max(held.deleteAt, entry.deleteAt) };
}

/**
 * RFC 9111 §4.4: whether writing `entry` would undo the mark of a write (`invalidatedAt`) that
 * `held` carries: `entry` was asked of the origin before that write, and is no later mark.
 * The mark is made from the copy it invalidates (same token), so the token check let the
 * copy's own write, behind its answer and still on its way when a `POST` through the isolate
 * marked it, land over the mark: every other isolate of the data center then read the old
 * page as fresh from the Cache API, after the `POST` had returned.
 */
function overtakesMark(entry: Entry, held: Omit<Entry, "body">): boolean {
  const at = held.invalidatedAt;
  return at !== undefined && (entry.invalidatedAt ?? -Infinity) < at && askedBefore(entry, at);
}

/** The synthetic URL an entry is cached under; any key string maps to exactly one URL. */
export function cacheUrlFor(key: string): string {
  return KEY_ORIGIN + encodeURIComponent(key);
}

function requestFor(key: string): Request {
  return new Request(cacheUrlFor(key), { method: "GET" });
}

function readMeta(res: Response): Omit<Entry, "body"> | undefined {
  const header = res.headers.get(ENTRY_META_HEADER);
  // Not ours (someone else wrote this URL): treat as absent.
  if (header === null) return undefined;
  // Written by a herdless of another entry format (a gradual deployment), or damaged: a miss.
  return readableEntryMeta(fromBase64Utf8(header));
}

// Header values must be bytes 0x20–0x7e to survive every hop; JSON can hold any Unicode.
function encodeMeta(meta: Omit<Entry, "body">): string {
  const bytes = new TextEncoder().encode(JSON.stringify(meta));
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function fromBase64Utf8(value: string): string {
  const binary = atob(value);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}
