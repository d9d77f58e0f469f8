import { canonicalUrl } from "./canonical-url.ts";
import { synthetic, type EngineResponse } from "./respond.ts";

/** `Host` as RFC 9110 §7.2 allows it: a DNS name or IPv4 address, or an IPv6 literal, then an optional port. */
const VALID_HOST = /^(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The Host check every runtime makes before anything else looks at a request. The key and
 * the origin URL are made from the Host, so a request whose Host is not a host name (`a b`,
 * `x|y`, `user@host`) or that carries two of them (which one would a cache and an origin
 * believe?) is refused with 400 (RFC 9112 §3.2), never guessed at and never a 500.
 * `hosts` holds every Host field the request carried (none for HTTP/1.0 without one).
 * (TRACE and TRACK are refused by the engine.)
 *
 * @example
 * hostRefusal(["a b"]); // a 400 answer: invalid Host header "a b"
 * hostRefusal(["shop.example"]); // undefined
 */
export function hostRefusal(hosts: readonly string[]): EngineResponse | undefined {
  return hostCountRefusal(hosts.length, hosts[0]);
}

/**
 * {@link hostRefusal} from the number of Host fields and the first one, for a runtime that
 * counts them while it scans the request's fields anyway (no list made per request).
 *
 * @example
 * hostCountRefusal(1, "shop.example"); // undefined
 */
export function hostCountRefusal(count: number, first: string | undefined): EngineResponse | undefined {
  if (count > 1) return refused("request has more than one Host header");
  if (first !== undefined && !validHost(first)) return refused(`invalid Host header ${JSON.stringify(first)}`);
  return undefined;
}

/**
 * RFC 9112 §3.2: a `400` for an HTTP/1.1 request without a Host field ("A server MUST respond
 * with a 400"), naming it; undefined otherwise. An HTTP/1.0 request may omit it.
 *
 * @example
 * missingHostRefusal(0, 1)?.status; // 400
 * missingHostRefusal(0, 0); // undefined
 */
export function missingHostRefusal(hosts: number, minorVersion: number): EngineResponse | undefined {
  if (hosts > 0 || minorVersion < 1) return undefined;
  return refused("request has no Host header: HTTP/1.1 requires one");
}

/**
 * RFC 9112 §6.1: a `501` for a body framed as chunked in another transfer coding as well
 * (`gzip, chunked`), naming it; undefined otherwise. Node's parser takes such a body by its
 * final `chunked` and hands on the bytes still coded: relayed, the origin read gzip bytes as
 * the form the client posted. herdless decodes no other coding, and RFC 9112 §6.1 says to
 * refuse one a server does not understand. A body whose final coding is not `chunked` has no
 * length at all (§6.3: a 400, and the connection closed), which Node's parser answers itself.
 *
 * @example
 * transferCodingRefusal("gzip, chunked")?.status; // 501
 * transferCodingRefusal("chunked"); // undefined
 */
export function transferCodingRefusal(transferEncoding: string | undefined): EngineResponse | undefined {
  if (transferEncoding === undefined) return undefined;
  const codings = transferEncoding.toLowerCase().split(",");
  if (codings.length < 2 || codings.at(-1)!.trim() !== "chunked") return undefined;
  return synthetic(
    501,
    `transfer coding not implemented: ${JSON.stringify(transferEncoding.slice(0, 200))}, this cache reads chunked alone`,
    { detail: "refused" },
  );
}

/** The most header fields a request may carry: node:http's default `maxHeadersCount`. */
const MAX_REQUEST_FIELDS = 2_000;

/**
 * RFC 6585 §5: a `431` for a request with 2,000 header fields or more, undefined otherwise.
 * node:http keeps a request's first 2,000 fields and drops the rest unheard (herdless's own
 * server reads them all; a server embedding `createHandler` may not), so a `Cookie` or
 * `Authorization` after them was neither seen nor sent: the request was answered as an
 * anonymous one. Browsers send 10 to 20; Apache refuses more than 100.
 *
 * @example
 * fieldCountRefusal(2_000)?.status; // 431
 */
export function fieldCountRefusal(fields: number): EngineResponse | undefined {
  if (fields < MAX_REQUEST_FIELDS) return undefined;
  return synthetic(431, `request header fields too many: ${fields} fields, this cache takes fewer than 2,000`, {
    detail: "refused",
  });
}

/**
 * The 400 for a request whose header field value `name` holds a control character (RFC 9110
 * §5.5: field-content is visible characters, SP, HTAB and obs-text), as Node's HTTP parser
 * gives before herdless runs ("Invalid header value char"). The Worker's `Headers` refuses
 * only NUL, CR and LF, so `X-A: a\x01b` reached the origin: a server that refuses it (Apache's
 * `HttpProtocolOptions Strict`, Kestrel) answered 400, which an origin putting `max-age` on
 * every answer had stored as the page for everyone (Cache-Poisoned Denial of Service, HTTP
 * meta character). {@link headRefusal} looks for it.
 */
function controlCharacterRefusal(name: string): EngineResponse {
  return refused(`invalid character in the ${JSON.stringify(name)} header value: a control character`);
}

/** RFC 9110 §5.5: a control character other than HTAB (NUL, CR and LF included, and DEL). */
function holdsControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

/**
 * Hosts already found valid. Every request is checked, and a site sees a handful of Host
 * values: a regular expression and a URL parse per request were the largest share of the
 * Node hit path's own CPU. Bounded (cleared when full), so a flood of made-up hosts costs
 * parsing again, never memory; invalid hosts are not remembered.
 */
const knownValid = new Set<string>();
const KNOWN_VALID_LIMIT = 256;

function validHost(host: string): boolean {
  if (knownValid.has(host)) return true;
  if (!VALID_HOST.test(host)) return false;
  try {
    // The adapters build the request URL from it: what passes here must parse there.
    if (new URL(`http://${host}/`).host === "") return false;
  } catch {
    return false;
  }
  if (knownValid.size >= KNOWN_VALID_LIMIT) knownValid.clear();
  knownValid.add(host);
  return true;
}

/** A scheme herdless keys and fetches by, as `URL.protocol` spells it. */
export type Scheme = "http:" | "https:";

/**
 * The scheme an `X-Forwarded-Proto` value names: its first entry (the proxy nearest the
 * client writes it; one that appends puts its own after a client's), `http` or `https` in any
 * case; undefined for anything else (`ftp`, `javascript`, an empty value), which names no
 * scheme herdless can key by. Read only where the operator trusts the proxy in front
 * (`origin.trustForwardedProto`): the page is then keyed by this scheme, so a forged value
 * reaches only pages keyed apart from everyone else's.
 *
 * @example
 * forwardedScheme("HTTPS, http"); // "https:"
 * forwardedScheme("ftp"); // undefined
 */
export function forwardedScheme(value: string | null | undefined): Scheme | undefined {
  if (value === null || value === undefined) return undefined;
  const comma = value.indexOf(",");
  const first = (comma < 0 ? value : value.slice(0, comma)).trim().toLowerCase();
  return first === "https" ? "https:" : first === "http" ? "http:" : undefined;
}

/**
 * The URL a request-target names (RFC 9112 §3.2), or undefined when herdless cannot serve it.
 * Origin-form (`/path?query`) is a path on `host`, whatever it looks like: `//evil.example/p`
 * is the path `//evil.example/p`, never a URL with another authority (resolving it against a
 * base, as `new URL(target, base)` does, would key and fetch `/p` instead of what was asked).
 * Absolute-form (`http://host/path`, what a client talking to a proxy sends) is taken as it
 * is (its authority wins over Host, §3.2.2) when it is an http(s) URL with a valid host and
 * no userinfo (RFC 9110 §4.2.4 asks to treat userinfo as an error). Asterisk- and
 * authority-form (`*`, `host:443`) and other schemes (`file:`, `javascript:`) name nothing
 * herdless can key or fetch.
 *
 * @example
 * targetUrl("//a/b?c", "shop.example")?.pathname; // "//a/b"
 * targetUrl("http://[zz]/x", "shop.example"); // undefined
 * targetUrl("http:///evil/p", "shop.example"); // undefined: no host
 * targetUrl("/p", "shop.example", "https:")?.href; // "https://shop.example/p"
 *
 * `scheme`: the one the client used, for an origin-form target ({@link forwardedScheme} on Node).
 */
export function targetUrl(target: string, host: string, scheme: Scheme = "http:"): URL | undefined {
  // One string, never resolved: with a valid host every origin-form target parses.
  if (target.startsWith("/")) return canonicalUrl(new URL(`${scheme}//${host}${target}`));
  // The authority as written. The URL parser makes one up from the path when it is empty
  // (`http:///evil/p` is `http://evil/p`, `/p` fetched for a client that asked for `/evil/p`)
  // and drops an empty userinfo (`http://@evil/p`): RFC 9110 §4.2.1 asks to reject an http
  // URI with an empty host, §4.2.4 to treat userinfo as an error.
  const authority = ABSOLUTE_AUTHORITY.exec(target)?.[1];
  if (!authority || authority.includes("@")) return undefined;
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.username !== "" || url.password !== "" || !validHost(url.host)) return undefined;
  return canonicalUrl(url);
}

/** An http(s) URL's scheme and authority, as written (RFC 3986 §3.2: up to the first `/`, `?` or `#`). */
const ABSOLUTE_AUTHORITY = /^https?:\/\/([^/?#]*)/i;

/**
 * The 400 for a request-target {@link targetUrl} cannot serve (never a 500 for client input);
 * undefined for a servable one. Origin-form targets are answered without parsing.
 *
 * @example
 * targetRefusal("http://[zz]/x", "shop.example")?.status; // 400
 */
export function targetRefusal(target: string, host: string): EngineResponse | undefined {
  if (target.startsWith("/") || targetUrl(target, host)) return undefined;
  return refused(`invalid request-target ${JSON.stringify(target.slice(0, 200))}: send a path or an http(s) URL`);
}

/**
 * RFC 9110 §2.5, §15.6.6: a `505` for a request in a major version other than HTTP/1 that
 * reached an HTTP/1 parser (`GET / HTTP/2.0`, or an HTTP/0.9 request line with no version),
 * undefined otherwise. Node's parser hands both on as requests; answered as HTTP/1.1, a
 * client or a proxy in front that reads the exchange by another version's framing may take
 * the answer for something else, so nothing is fetched or stored for them.
 *
 * @example
 * versionRefusal(2)?.status; // 505
 */
export function versionRefusal(major: number): EngineResponse | undefined {
  if (major === 1) return undefined;
  return synthetic(505, "HTTP version not supported: this cache speaks HTTP/1.0 and HTTP/1.1", { detail: "refused" });
}

function refused(message: string): EngineResponse {
  return synthetic(400, message, { detail: "refused" });
}

/**
 * The longest request-target served, in characters: Node's parser refuses a request head
 * (target and fields together) past 16 KiB, and Cloudflare's edge a URL past 16 KB.
 */
const TARGET_MAX_CHARS = 16 * 1024;

/**
 * RFC 9110 §15.5.15: a `414` for a request-target longer than {@link TARGET_MAX_CHARS},
 * undefined otherwise. `url` is the request's absolute URL (the Worker's `request.url`).
 * workerd under `npm start` takes heads of 128 KiB and passed such a target on: the origin
 * was asked for it (a strict one closing on it), and the key was made from it.
 *
 * @example
 * targetLengthRefusal(`https://shop.test/?${"a".repeat(20_000)}`)?.status; // 414
 */
export function targetLengthRefusal(url: string): EngineResponse | undefined {
  const length = targetLength(url);
  if (length <= TARGET_MAX_CHARS) return undefined;
  return synthetic(414, `URI too long: the request-target (${length} bytes) is over this cache's 16 KiB limit`, {
    detail: "refused",
  });
}

/** The request-target's length in an absolute URL: its path and query. */
function targetLength(url: string): number {
  const path = url.indexOf("/", url.indexOf("//") + 2);
  return path < 0 ? 0 : url.length - path;
}

/**
 * The checks a runtime whose server passes any request head on makes of it before anything
 * else (the Worker: Cloudflare's edge passes heads of up to 128 KB), as Node's parser does:
 * a control character in a field value (400), a request-target past 16 KiB (414), then a
 * head past 16 KiB (431), in that order. `url` is the request's absolute URL; `fields` is
 * read once (it runs on every Worker request, hits included).
 *
 * @example
 * headRefusal("https://shop.test/p", new Headers({ "x-a": "a\x07b" }))?.status; // 400
 */
export function headRefusal(url: string, fields: Iterable<[string, string]>): EngineResponse | undefined {
  let fieldBytes = 0;
  for (const [name, value] of fields) {
    if (holdsControlCharacter(value)) return controlCharacterRefusal(name);
    fieldBytes += name.length + value.length + 4;
  }
  return targetLengthRefusal(url) ?? headSizeVerdict(targetLength(url) + fieldBytes);
}

/** The largest request head served, in bytes: Node's parser refuses one past 16 KiB (`--max-http-header-size`). */
const HEAD_MAX_BYTES = 16 * 1024;

/**
 * RFC 6585 §5: a `431` for a request whose head (`bytes`: its request-target and its header
 * fields, each as HTTP/1.1 writes it, `name: value` and a line end) is over 16 KiB, undefined
 * otherwise: the limit Node's parser holds every request to. Cloudflare's edge, and workerd under `npm start`, pass
 * heads of up to 128 KB, and every end-to-end header is forwarded: the origin was sent
 * whatever an attacker wrote, and a server that resets a connection on a head past its own
 * limit before answering (nginx's and Node's are 8 and 16 KiB) failed each such request as
 * an unreachable origin, which the breaker counts by path: eight of them, to eight paths of
 * the attacker's choosing, opened it for every visitor.
 */
function headSizeVerdict(bytes: number): EngineResponse | undefined {
  if (bytes <= HEAD_MAX_BYTES) return undefined;
  return synthetic(
    431,
    `request header fields too large: the request-target and headers (${bytes} bytes) are over this cache's 16 KiB limit`,
    { detail: "refused" },
  );
}
