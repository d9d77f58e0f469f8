import { routeFor, type Config } from "../config.ts";
import type { Entry } from "../http/entry.ts";
import { lifetimes } from "../http/freshness.ts";
import { headerList } from "../http/http.ts";
import { keptSelectors, selectingNames, type SelectorSource } from "../http/key.ts";
import type { OriginResponse } from "../origin/origin-client.ts";
import type { FillRequest } from "./coordinator.ts";
import type { Store } from "../store/store.ts";
import type { ErrorOver } from "../http/request-blame.ts";
import { confirmableError, fieldsDigest } from "../http/asked-by.ts";
import { clientInput, type OrdinaryHeadersConfig } from "../origin/client-inputs.ts";

/**
 * Whether an error to this fill may be blamed on its request's own input rather than stored
 * (blamesTheRequest's `over`). When the URL has a stored response: this variant's, or
 * any other's (the Vary pointer under the primary key; an error without `Vary` is stored in
 * the pointer's place and served to every variant, so an attacker's `X-Lang: zz` made the
 * origin's 404 every language's page). And when the error would be fresh for no time at all
 * (no explicit freshness, no heuristic): stored, it served only the requests collapsed onto
 * this fill, every visitor arriving while the attacker's 404 was on its way. What it would
 * be stored over: a copy (`copy`), nothing that lasts (`fleeting`), or neither (undefined).
 */
export async function errorBlameable(
  ctx: { config: Config; store: Store; kept?: SelectorSource | undefined },
  request: FillRequest,
  stored: Entry | undefined,
  res: OriginResponse,
): Promise<ErrorOver> {
  if (res.status < 400) return undefined;
  if (isCopy(stored, res.status)) return "copy";
  const { status, requestAt, responseAt } = res;
  const info = { status, headers: headerList(res.headers), requestAt, responseAt };
  // The pointer stands for the URL's other variants: an error stored in its place answers them
  // all, and one selected on other headers than theirs rewrites it, which every variant then
  // misses. An error selected on the very headers the pointer names (the same Vary) is stored
  // under its own variant's key, over `stored` alone: blamed on the pointer, a 400 or 5xx with
  // `Vary: Accept-Language` that every visitor got was never confirmed, and every request of
  // the URL went to the origin.
  if (request.key !== request.primary) {
    const pointer = await ctx.store.get(request.primary);
    const selectors = selectingNames(headerList(res.headers), keptSelectors(ctx.kept ?? { vary: [] }, responseAt));
    if (isCopy(pointer) && !sameNames(selectors, pointer?.vary ?? [])) return "copy";
  }
  return lifetimes(info, routeFor(ctx.config, request.path), ctx.config).staleAt <= responseAt ? "fleeting" : undefined;
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((name) => b.includes(name));
}

/**
 * Whether `entry` is a copy of the URL an error with `status` must not replace. An unconfirmed
 * error (asked-by.ts) is not: blamed on it, the answer confirming it was never stored. Nor is a
 * stored 400, 413, 414 or 5xx, nor an error of the answer's own status (an API's 404 to
 * clients that all send `X-Api-Version`): blamed on them, the error every request gets was never
 * stored again once it expired, and every request of the URL went to the origin. Over them,
 * an error is stored as on a key with no copy (a 400 or 5xx unconfirmed).
 */
function isCopy(entry: Entry | undefined, status?: number): boolean {
  if (entry === undefined || entry.askedBy !== undefined) return false;
  return status === undefined || !(confirmableError(entry.status) || entry.status === status);
}

/**
 * The entry an origin's answer to this fill is stored as. A 400, 413, 414 or 5xx stored over
 * no copy (`over` not `copy`: the case blamesTheRequest lets through, an error with explicit
 * freshness on a cold key) may be the origin choking on this request's own header values (an
 * attacker's `Accept-Language: xx`, a 3 KB `Referer`): stored unconfirmed, with the digest of
 * the fields this fill sent (Entry `askedBy`), it answers only a request like this one. The
 * answer of the same class to another request's fill, over an unconfirmed error, is stored
 * confirmed: two requests got it, it says what the URL is now. Only a request any visitor
 * could have sent confirms (no input of its client's own: clientInput): an attacker who asked
 * twice with its own `X-Debug` and two `User-Agent`s was two requests, and its 500 became
 * every visitor's page.
 *
 * @example
 * const stored = await unlessConfirmed(ctx, request, entry, over);
 */
export async function unlessConfirmed(
  ctx: { store: Store; config: OrdinaryHeadersConfig },
  request: FillRequest,
  entry: Entry,
  over: ErrorOver,
): Promise<Entry> {
  if (over === "copy" || !confirmableError(entry.status)) return entry;
  const [digest, held] = await Promise.all([fieldsDigest(request.headers), ctx.store.get(entry.key)]);
  const sameClass = held !== undefined && Math.floor(held.status / 100) === Math.floor(entry.status / 100);
  const confirms =
    sameClass &&
    held.askedBy !== undefined &&
    held.askedBy !== digest &&
    clientInput(request.headers, ctx.config) === undefined;
  return confirms ? entry : { ...entry, askedBy: digest };
}
