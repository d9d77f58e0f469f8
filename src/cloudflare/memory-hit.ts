import { personalCookies } from "../core/http/cookies.ts";
import { filledStatus } from "../core/engine-answer.ts";
import { fromCoordinatorCopy } from "../core/fill/coordinator.ts";
import type { CacheStatus } from "../core/http/cache-status.ts";
import type { Entry } from "../core/http/entry.ts";
import { memoryAnswer, type UrlTarget } from "../core/http/fresh-hit.ts";
import { hitHeaders, waiterHeaders } from "../core/http/respond.ts";
import { needsFullAnswer } from "../core/http/request-directives.ts";
import { selectingView } from "../core/origin/forward.ts";
import { CacheApiStore } from "./cache-api-store.ts";
import { requestFields } from "./convert.ts";
import type { ReadyIsolate } from "./isolate.ts";
import type { Landed } from "./isolate-flights.ts";

/**
 * A hit in the isolate's memory, answered with no engine, store or RPC built for the
 * request: the same decision as the engine's (core/fresh-hit.ts memoryAnswer) and the same
 * bytes (`fromEntry`). That includes a copy served while this isolate already refreshes it
 * (stale-while-revalidate, refresh-ahead): at an expiry under a spike, the first request
 * starts the one refresh through the engine and the others are answered here. Anything else,
 * or a purge list past its bound, goes the full way.
 *
 * With `landed`, the request waited on its isolate's flight for the key
 * (IsolateFlights.landing), which brought the entry memory now holds: it is answered as the
 * engine answers a caller that joined that flight (`Cache-Status: fwd=uri-miss; collapsed`,
 * `fwd=stale` when its own copy had expired; a hit when the key's object answered from its
 * stored copy), with `fwd` as the engine would have decided it before the wait,
 * still with nothing built. A flight that brought anything else (a failure, a body still
 * streaming, an answer for one client) goes the full way, where the request joins it.
 */
export function memoryHit(
  isolate: ReadyIsolate,
  request: Request,
  target: UrlTarget,
  cacheName: string,
  background: (work: Promise<unknown>) => void,
  landed?: Landed & { fwd: CacheStatus["fwd"] },
): Response | undefined {
  if (request.method !== "GET" && request.method !== "HEAD") return undefined;
  const led = landed?.shared?.result.kind === "entry" ? landed.shared.result : undefined;
  if (landed && (!led || led.entry.negative)) return undefined;
  const purges = isolate.purges.fresh(background);
  if (!purges) return undefined;
  const { route, primary } = target;
  const headers = request.headers;
  const facts = {
    method: request.method,
    hasAuthorization: headers.has("authorization"),
    hasCookie: personalCookies(headers.get("cookie"), isolate.config.cache.ignoreCookies),
  };
  const now = isolate.clock.now();
  const selecting = selectingView(requestFields(headers), isolate.forward, {
    credentials: route.cacheAuthorized || facts.hasAuthorization,
    url: target.url,
    // Set by Cloudflare's edge (convert.ts toEngineRequest).
    clientAddress: headers.get("cf-connecting-ip") ?? undefined,
  });
  const answer = memoryAnswer(
    isolate.memoryFor(cacheName),
    route,
    primary,
    facts,
    { client: headers, selecting },
    purges,
    now,
    isolate.refreshMarksFor(cacheName),
  );
  if (!answer) return undefined;
  const { entry, detail } = answer;
  if (led) {
    // Memory holds another copy than the flight's (a newer one, or a variant): the engine answers.
    if (entry.token !== led.entry.token || entry.key !== led.entry.key || detail !== undefined) return undefined;
    if (landed?.fwd === undefined) return undefined;
    // As the engine answers a waiter of the flight: collapsed onto a fetch that went forward,
    // or a hit when the key's object answered from its stored copy (engine-answer.ts).
    const waiter = { ...led, collapsed: !fromCoordinatorCopy(led), stored: false };
    isolate.metrics.count(waiter.collapsed ? "collapsed" : "hit", primary);
    const status = filledStatus(waiter, landed.fwd);
    return new Response(request.method === "HEAD" ? null : entry.body, {
      status: entry.status,
      headers: headersObject(waiterHeaders(entry, status, now)),
    });
  }
  isolate.metrics.count(entry.negative ? "negative" : detail === "stale-while-revalidate" ? "stale" : "hit", primary);
  rereadDue(isolate, cacheName, primary, entry.key, now, background);
  return new Response(request.method === "HEAD" ? null : entry.body, {
    status: entry.status,
    headers: headersObject(hitHeaders(entry, now, detail)),
  });
}

/**
 * Other isolates of the data center write its Cache API too (an unsafe method's invalidation
 * mark, a newer copy): a copy memory has answered from for `admin.purgePropagationMs` since it
 * was put is read from there again behind this answer, once per isolate, as the purge list
 * is. It answers meanwhile; what the read finds replaces it unless memory's copy is newer or
 * this isolate wrote the key while the read ran.
 */
function rereadDue(
  isolate: ReadyIsolate,
  cacheName: string,
  primary: string,
  key: string,
  now: number,
  background: (work: Promise<unknown>) => void,
): void {
  const memory = isolate.memoryFor(cacheName);
  const afterMs = isolate.config.admin.purgePropagationMs;
  // The URL's entry (a Vary pointer carries the URL's invalidation mark) and the variant answered.
  const due: [string, Entry][] = [];
  for (const k of key === primary ? [primary] : [primary, key]) {
    const held = memory.claimReread(k, afterMs, now);
    if (held) due.push([k, held]);
  }
  if (due.length === 0) return;
  background(
    (async () => {
      const near = new CacheApiStore(await caches.open(cacheName), isolate.clock);
      for (const [k, held] of due) {
        const found = await near.get(k);
        // Never over what this isolate wrote meanwhile (LruStore.putReread).
        if (found) await memory.putReread(found, held);
      }
    })(),
  );
}

/**
 * The Headers of each prepared hit or waiter's answer (hitHeaders and waiterHeaders answer the
 * same array while the entry's Age and TTL stay the same, so a second at most). workerd converts an array of pairs field by
 * field on every `new Response` (~20 µs for a dozen fields, most of a hit's own CPU) and
 * copies a Headers object natively (~1 µs); the Response gets its own copy either way, so
 * what a caller does to one hit's headers never reaches the next.
 */
const asHeaders = new WeakMap<readonly (readonly [string, string])[], Headers>();

function headersObject(pairs: [string, string][]): Headers {
  let headers = asHeaders.get(pairs);
  if (headers === undefined) asHeaders.set(pairs, (headers = new Headers(pairs)));
  return headers;
}

/**
 * Whether a memory answer could serve this request once its isolate's flight landed: a plain
 * read. One that must be validated, or carries credentials, a condition or a range, makes
 * or joins its call through the engine at once, as it always did.
 */
export function mayJoinFromMemory(request: Request, target: UrlTarget): boolean {
  const { headers } = request;
  if (request.method !== "GET" && request.method !== "HEAD") return false;
  if (headers.has("authorization")) return false;
  return !needsFullAnswer(headers, target.route.honorRequestNoCache);
}

/**
 * What the engine would have said this request went forward for, from the copy the isolate
 * held before it waited on the key's flight: nothing (`uri-miss`), or a copy that had expired
 * (`stale`). With variants only the engine's lookup can tell: undefined, and it answers.
 */
export function forwardedAs(held: Entry | undefined): CacheStatus["fwd"] {
  if (held === undefined) return "uri-miss";
  return held.vary.length === 0 ? "stale" : undefined;
}
