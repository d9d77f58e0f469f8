import type { Config } from "../config.ts";
import { normalizedAcceptEncoding } from "../http/accept-encoding.ts";
import { oneCookieField } from "../http/cookies.ts";
import { SURROGATE_DEVICE_TOKEN } from "../http/targeted-cache-control.ts";
import { headerList, HOP_BY_HOP, type HeaderReader } from "../http/http.ts";
import { RANGE_FIELDS } from "../http/range.ts";
import { ABOUT_THE_WAY, forwardsCount, loopEntry } from "./hops.ts";

/**
 * Never sent to the origin, whatever the config: hop-by-hop headers (RFC 9110 §7.6.1) and
 * headers a proxy must not pass on (Expect: herdless answers `100 Continue` itself; Host:
 * set by `origin.hostHeader`).
 */
const NEVER_FORWARDED = new Set([...HOP_BY_HOP, "expect", "host"]);

/**
 * Dropped on shared fills only. A fill asks for the full, unconditional response that every
 * waiter will be served: a client's validators or Range would make the origin answer that
 * client alone (the coordinator adds its own validators). One client's relay keeps them all.
 */
const NOT_ON_FILLS = new Set([
  "if-none-match",
  "if-modified-since",
  "if-match",
  "if-unmodified-since",
  ...RANGE_FIELDS,
  // RFC 3229's ask for a 226 delta.
  "a-im",
  ...ABOUT_THE_WAY,
  // What describes a body (RFC 9110 §8), which a fill never sends: a `Content-Type:
  // multipart/form-data` on a body-less GET made an origin that parses the body on every method
  // (Rails, Rack 2.2+) answer 400, stored as everyone's page when it marks every answer max-age.
  "content-type",
  "content-encoding",
  "content-language",
  "content-location",
  "content-range",
  "content-md5",
  "digest",
  "content-digest",
  "repr-digest",
]);

/** Credentials: forwarded on a shared fill only when the route caches credentialed requests. */
export const CREDENTIALS = new Set(["authorization", "cookie"]);

/** What herdless adds to the `Via` header (RFC 9110 §7.6.3). */
const VIA = "1.1 herdless";

/**
 * What herdless adds to `Surrogate-Capability` (W3C Edge Architecture 1.0 §2.2): its device
 * token, so an origin can target `Surrogate-Control` directives at it.
 */
const SURROGATE_CAPABILITY = `${SURROGATE_DEVICE_TOKEN}="Surrogate/1.0"`;

/** Headers each proxy on the way extends with its own entry (with `origin.forwardedHeaders`). */
const PROXY_ADDED = new Set(["x-forwarded-for", "x-forwarded-proto", "via", "surrogate-capability"]);

/** The request-header policy of a deployment, built once from its config. */
export interface ForwardPolicy {
  stripped: ReadonlySet<string>;
  /** This deployment's `CDN-Loop` entry ({@link loopEntry}). */
  loopEntry: string;
  forwardedHeaders: boolean;
  hostHeader: Config["origin"]["hostHeader"];
}

/** The policy `config` asks for. */
export function forwardPolicy(config: Config): ForwardPolicy {
  const { stripRequestHeaders, forwardedHeaders, hostHeader, url } = config.origin;
  const stripped = new Set(stripRequestHeaders.map((n) => n.toLowerCase()));
  return { stripped, loopEntry: loopEntry(url), forwardedHeaders, hostHeader };
}

/** Who asks the origin: a shared fill (its answer may be stored) or one client's own request. */
export interface ForwardContext {
  kind: "fill" | "relay";
  /** Forward Authorization and Cookie on a fill (the route caches credentialed requests). */
  credentials: boolean;
  /** The URL the client asked for: its host and scheme. */
  url: URL;
  /** The client's address, for X-Forwarded-For, when the runtime knows it. */
  clientAddress?: string | undefined;
  /** Whether the origin request carries the client's body (an upload relayed); fills never do. */
  body: boolean;
  /** The relayed request's method, when it is not a fill's GET: an OPTIONS has its Max-Forwards counted down. */
  method?: string;
}

/**
 * The headers an origin request carries: the client's end-to-end request headers, unchanged
 * and in order, minus the hop-by-hop ones and those `Connection` names, `Expect`, `TE`,
 * `Upgrade`, every `Proxy-*`, the operator's strip list (poisoning vectors by default),
 * every such header spelled with `_` for `-` ({@link spellsGoverned}), the underscore spelling
 * of a header the request also sends with dashes (`User_Agent` beside `User-Agent`) and, on shared fills,
 * credentials (unless the route caches them), validators, Range, `Content-Type` and kin, `Max-Forwards`, `Early-Data`, a client's
 * `Surrogate-Capability`, and `Content-Length` unless the client's body is sent on. Cookie
 * fields go as one ({@link oneCookieField}). `Accept-Encoding` is normalized (see {@link normalizedAcceptEncoding}) so the origin's
 * answer matches the variant it is stored under. Then `Host` per `origin.hostHeader`, and
 * `X-Forwarded-For` (on a fill the client's address alone, on a relay appended to the client's
 * chain), `X-Forwarded-Proto`, `Via` and `Surrogate-Capability` as a proxy adds them. This is the one
 * place that decides what reaches the origin, for fills, revalidations and relays alike.
 *
 * @example
 * originRequestHeaders([["accept", "text/html"], ["x-forwarded-host", "evil"]], policy, { kind: "fill", credentials: false, url, body: false });
 * // [["accept", "text/html"], ["accept-encoding", "identity"], ["x-forwarded-for", …], ["x-forwarded-proto", "https"], ["via", "1.1 herdless"]]
 */
export function originRequestHeaders(
  raw: readonly (readonly [string, string])[],
  policy: ForwardPolicy,
  context: ForwardContext,
): [string, string][] {
  const listed = connectionListed(raw);
  const spelled = spelledWithDashes(raw);
  const out: [string, string][] = [];
  const forwardedFor: string[] = [];
  const via: string[] = [];
  const surrogateCapability: string[] = [];
  const cdnLoop: string[] = [];
  let acceptEncoding: string | undefined;
  let toldProto = false;
  for (const [rawName, value] of oneCookieField(raw)) {
    const name = rawName.toLowerCase();
    if (NEVER_FORWARDED.has(name) || name.startsWith("proxy-") || listed.has(name)) continue;
    if (policy.stripped.has(name) || spellsGoverned(name, policy)) continue;
    // `User_Agent` beside `User-Agent`: a CGI-style origin reads one of the two as the other,
    // and a page that varies on it would be stored under the value it did not read.
    if (name.includes("_") && spelled.has(name.replaceAll("_", "-"))) continue;
    // Alone, `Accept_Language` is still `HTTP_ACCEPT_LANGUAGE` to a CGI-style origin, while the
    // variant is keyed by the Accept-Language the fill did not send: the page in the attacker's
    // language was stored for every visitor sending none. A shared fill carries no underscore
    // name at all, as nginx sends none by default (`underscores_in_headers off`); one client's
    // relay keeps those that do not spell a governed header.
    if (name.includes("_") && context.kind === "fill") continue;
    if (context.kind === "fill" && (NOT_ON_FILLS.has(name) || (CREDENTIALS.has(name) && !context.credentials)))
      continue;
    // A client's Surrogate-Capability is a claim anyone can write: `x="ESI/1.0"` on a fill made
    // an ESI origin (Symfony) answer with raw <esi:include> tags for the surrogate to process,
    // and that page was stored for everyone. On a fill only herdless's own capability is said.
    if (context.kind === "fill" && name === "surrogate-capability") continue;
    // Content-Length frames the client's body and goes with it (beside Transfer-Encoding it frames
    // nothing: RFC 9112 §6.3). A length without its bytes (a fat GET's: never sent on) leaves the
    // origin waiting for them until the call times out, a failure the breaker counts.
    if (name === "content-length" && (!context.body || spelled.has("transfer-encoding"))) continue;
    const forwards = name === "max-forwards" && context.method === "OPTIONS" ? forwardsCount(value) : undefined;
    if (forwards !== undefined) {
      // RFC 9110 §7.6.2: an intermediary counts itself (a 0 never gets here: the engine answers it).
      out.push([name, String(Math.max(0, forwards - 1))]);
      continue;
    }
    if (name === "cdn-loop") {
      cdnLoop.push(value);
      continue;
    }
    if (name === "accept-encoding") {
      acceptEncoding = acceptEncoding === undefined ? value : `${acceptEncoding}, ${value}`;
      continue;
    }
    if (PROXY_ADDED.has(name) && (policy.forwardedHeaders || name === "x-forwarded-proto")) {
      // On a fill the client's own chain is a claim the answer everyone gets must not depend
      // on: frameworks take its first address as the client's (geolocation, rate limits,
      // pages that show it), so a forged one would be stored for all; a relay keeps it. And
      // X-Forwarded-Proto is the scheme the page is keyed by: a client's value steers redirects.
      if (name === "x-forwarded-for" && context.kind === "relay") forwardedFor.push(value);
      if (name === "via") via.push(value);
      if (name === "surrogate-capability") surrogateCapability.push(value);
      if (name === "x-forwarded-proto") toldProto = true;
      continue;
    }
    out.push([name, value]);
  }
  out.push(["accept-encoding", normalizedAcceptEncoding(acceptEncoding ?? null)]);
  // RFC 8586: every CDN adds its entry, whatever else it forwards; herdless's own comes back only in a loop.
  out.push(["cdn-loop", [...cdnLoop, policy.loopEntry].join(", ")]);
  const host = hostFor(policy.hostHeader, context.url);
  if (host !== undefined) out.push(["host", host]);
  if (policy.forwardedHeaders && context.clientAddress) forwardedFor.push(context.clientAddress);
  if (forwardedFor.length > 0) out.push(["x-forwarded-for", forwardedFor.join(", ")]);
  // Without forwardedHeaders the proxy in front's, keyed by its first entry (trustForwardedProto):
  // told as that scheme, once, so no other reading of it (its last entry) shapes the page.
  if (policy.forwardedHeaders || toldProto) out.push(["x-forwarded-proto", protoOf(context.url)]);
  if (policy.forwardedHeaders) {
    out.push(["via", [...via, VIA].join(", ")]);
    out.push(["surrogate-capability", [...surrogateCapability, SURROGATE_CAPABILITY].join(", ")]);
  }
  return out;
}

/**
 * Every header whose forwarding herdless decides (dropped, replaced, or sent only on some
 * requests), as opposed to the end-to-end headers it passes on as they are.
 */
const GOVERNED = new Set([
  ...NEVER_FORWARDED,
  ...NOT_ON_FILLS,
  ...CREDENTIALS,
  ...PROXY_ADDED,
  "content-length",
  "accept-encoding",
  "max-forwards",
  "cdn-loop",
]);

/**
 * Whether `name` is another spelling of a header herdless governs, with `_` for `-`
 * (`X_Forwarded_Host`, `If_None_Match`). CGI-style gateways (PHP's FastCGI, WSGI servers, Rack
 * and Puma before 6.4.3: CVE-2024-45614) name both `HTTP_X_FORWARDED_HOST`, so the origin
 * reads the attacker's value as the header herdless stripped, replaced or kept off the
 * shared fill. nginx drops every name with an underscore by default
 * (`underscores_in_headers off`); herdless drops only these, and passes other names on.
 */
function spellsGoverned(name: string, policy: ForwardPolicy): boolean {
  if (!name.includes("_")) return false;
  const alias = name.replaceAll("_", "-");
  return GOVERNED.has(alias) || alias.startsWith("proxy-") || policy.stripped.has(alias);
}

/**
 * The request headers a stored variant is selected by (RFC 9111 §4.1): those a shared fill
 * of the request sends the origin ({@link originRequestHeaders}), built on first read. An
 * entry's variant key is made from the headers its origin request carried, so a lookup must
 * read the same view, not the client's own headers: a response that varies on a header
 * herdless sets or replaces (`Vary: Host`, `X-Forwarded-Proto`, `Via`) never matched a
 * client's lookup, and every request for the page went to the origin.
 *
 * @example
 * lookup(near, primary, primary, selectingView(request.rawHeaders, policy, { credentials: false, url }));
 */
export function selectingView(
  raw: readonly (readonly [string, string])[],
  policy: ForwardPolicy,
  context: SelectingContext,
): HeaderReader {
  let view: HeaderReader | undefined;
  let listed: Set<string> | undefined;
  return {
    get(name: string): string | null {
      // The common cases without building the whole list (a hit on a Vary'd page reads this):
      // a header sent on as the client wrote it, and Accept-Encoding, sent normalized.
      listed ??= connectionListed(raw);
      if (!listed.has(name) && !policy.stripped.has(name) && !name.includes("_")) {
        if (!GOVERNED.has(name) && !name.startsWith("proxy-")) return joined(raw, name);
        if (name === "accept-encoding") return normalizedAcceptEncoding(joined(raw, name));
      }
      view ??= headerList(selectingHeaders(raw, policy, context));
      return view.get(name);
    },
  };
}

/** The values of the fields named `name` (lowercased) joined with ", ", as `headerList` reads them. */
function joined(raw: readonly (readonly [string, string])[], name: string): string | null {
  let value: string | null = null;
  for (const [n, v] of raw) if (n === name) value = value === null ? v : `${value}, ${v}`;
  return value;
}

/** The request's field names (lowercased) spelled with dashes only, no underscore. */
function spelledWithDashes(raw: readonly (readonly [string, string])[]): Set<string> {
  const names = new Set<string>();
  for (const [name] of raw) if (!name.includes("_")) names.add(name.toLowerCase());
  return names;
}

/** The lowercased names the request's `Connection` fields list (hop-by-hop for this hop). */
function connectionListed(raw: readonly (readonly [string, string])[]): Set<string> {
  const listed = new Set<string>();
  for (const [name, value] of raw)
    if (name.toLowerCase() === "connection") for (const item of value.split(",")) listed.add(item.trim().toLowerCase());
  return listed;
}

/** What a fill of the request is sent with: its URL, client, and whether its credentials go too. */
export type SelectingContext = Omit<ForwardContext, "kind" | "body" | "method">;

/** The headers of {@link selectingView}, as a list (what a key's coordinator is told). */
export function selectingHeaders(
  raw: readonly (readonly [string, string])[],
  policy: ForwardPolicy,
  context: SelectingContext,
): [string, string][] {
  return originRequestHeaders(raw, policy, { ...context, kind: "fill", body: false });
}

/** The `X-Forwarded-Proto` value for the scheme a page is keyed by. */
const protoOf = (url: URL): string => (url.protocol === "https:" ? "https" : "http");

/** The Host the origin is sent; undefined lets the runtime's fetch use the origin URL's own. */
function hostFor(setting: ForwardPolicy["hostHeader"], url: URL): string | undefined {
  if (setting === "origin") return undefined;
  if (setting === "client") return url.host;
  return setting;
}

/** The origin URL for the client's path and `query` (the key's for fills, the client's for relays). */
export function originUrl(config: Config, url: URL, query: string): string {
  const origin = new URL(config.origin.url);
  const base = origin.pathname.endsWith("/") ? origin.pathname.slice(0, -1) : origin.pathname;
  return `${origin.protocol}//${origin.host}${base}${url.pathname}${query}`;
}
