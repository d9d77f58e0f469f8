import type { FillHeard } from "../../core/fill/relay.ts";
import { decodeEntry, encodeEntry, type Entry } from "../../core/http/entry.ts";

/**
 * The largest stored entry (encoded) that travels with its flight's announcement. The
 * announcement goes over the connection of the leases and the guard, once to every member
 * waiting on the key: a few KiB cost less there than each member's read of the entry after
 * it (one more round trip before its waiters' answer); a larger entry is read from the store.
 */
export const ANNOUNCED_ENTRY_BYTES = 16 * 1024;

/**
 * What a fleet member publishes on a key's fill channel when its flight ends: the
 * announcement, then, for a stored entry small enough, a line with the entry (encodeEntry,
 * base64). A member that reads no such line (an older one, or a larger entry) reads the store.
 *
 * @example
 * await notifier.publish(key, fillNews("done:42", entry)); // elsewhere: heardFrom(message)
 */
export function fillNews(message: string, stored: Entry | undefined): string {
  if (!stored || stored.body.byteLength > ANNOUNCED_ENTRY_BYTES) return message;
  const encoded = encodeEntry(stored);
  if (encoded.byteLength > ANNOUNCED_ENTRY_BYTES) return message;
  return `${message}\n${Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength).toString("base64")}`;
}

/** Inverse of {@link fillNews}; an entry of another format version (a rolling deploy) or damaged is left out: the waiter reads the store. */
export function heardFrom(news: string): FillHeard {
  const newline = news.indexOf("\n");
  if (newline < 0) return { message: news };
  const message = news.slice(0, newline);
  try {
    const bytes = Buffer.from(news.slice(newline + 1), "base64");
    const entry = decodeEntry(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return writableHere(entry) ? { message, entry } : { message };
  } catch {
    return { message };
  }
}

/**
 * Whether Node can write `entry`'s fields: every value Latin-1, as Node's parser reads an
 * origin's (a Worker's entries may hold UTF-8, Node's never do). One that is not (a hand edit
 * or another app's write in Redis) made every request of the page a `500`: Node's writer threw.
 */
export function writableHere(entry: Entry): boolean {
  return entry.headers.every(([, value]) => !/[\u0100-\uffff]/.test(value));
}
