import type { Entry } from "./entry.ts";
import { tellsApartBy } from "../origin/client-inputs.ts";

const encoder = new TextEncoder();

/**
 * The statuses an origin may give one request's header values (a `400` from a WAF to a
 * `User-Agent`, a `500` from an application that crashes on an `Accept-Language`) and which a
 * key with no copy still stores when their freshness is explicit (request-blame.ts
 * blamesTheRequest): stored unconfirmed ({@link Entry} `askedBy`).
 */
export function confirmableError(status: number): boolean {
  return status === 400 || status === 413 || status === 414 || status >= 500;
}

/**
 * A digest of the header fields a fill sends to the origin (FillRequest `headers`: names
 * lowercased, after every stripping, so the same client request gives the same digest on
 * Node and on the Worker), as far as they tell one request from another
 * (client-inputs.ts tellsApartBy): each ordinary field with its value, a client's own input
 * by its name, a request id not at all; names sorted; SHA-256, 128 bits in hex. A hash no one
 * can aim: a forged request must not take the digest of a victim's.
 *
 * @example
 * const digest = await fieldsDigest(request.headers);
 */
export async function fieldsDigest(headers: readonly (readonly [string, string])[]): Promise<string> {
  const told: [string, string][] = [];
  for (const [raw, value] of headers) {
    const name = raw.toLowerCase();
    const by = tellsApartBy(name);
    if (by !== undefined) told.push([name, by === "value" ? value : ""]);
  }
  // Stable: fields of one name keep their order (it may matter to the origin).
  told.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const bytes = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(JSON.stringify(told))));
  let hex = "";
  for (const byte of bytes.subarray(0, 16)) hex += byte.toString(16).padStart(2, "0");
  return hex;
}

/**
 * Whether `entry` may answer a request whose fill sends `headers`: any confirmed entry, and an
 * unconfirmed error only to a request like the one it answered (the same fields, the same
 * values). Any other request's answer may differ: an attacker's `Accept-Language: xx` that the
 * application crashes on got a `500` marked `max-age` by an origin that marks every answer,
 * and stored, it was every visitor's page on a cold key.
 *
 * @example
 * if (!(await servesFields(entry, fill.headers))) entry = undefined; // a miss: the origin is asked
 */
export async function servesFields(
  entry: Pick<Entry, "askedBy"> | undefined,
  headers: readonly (readonly [string, string])[],
): Promise<boolean> {
  return entry?.askedBy === undefined || entry.askedBy === (await fieldsDigest(headers));
}

/** `entry` when it {@link servesFields} `headers`, else undefined (a miss). */
export async function servedTo(
  entry: Entry | undefined,
  headers: readonly (readonly [string, string])[],
): Promise<Entry | undefined> {
  return (await servesFields(entry, headers)) ? entry : undefined;
}
