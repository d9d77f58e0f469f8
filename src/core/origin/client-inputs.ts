/**
 * Header bytes past which a fill is not an ordinary request: browsers and apps send 1–2 KB
 * without cookies (a shared fill carries none), while web servers refuse a field at 8 KiB
 * (nginx, Apache) and herdless takes 16 KiB.
 */
const UNUSUAL_FILL_HEAD_BYTES = 4 * 1024;

/**
 * Header fields past which a fill is not an ordinary request: browsers send 10–20, while
 * Apache refuses more than 100 (`LimitRequestFields`) and Varnish about 64 (`http_max_hdr`).
 */
const UNUSUAL_FILL_FIELDS = 64;

/**
 * Request ids and trace context that load balancers, proxies and instrumented clients add to
 * every request (AWS ALB, Google Cloud LB, nginx, Heroku, Envoy, OpenTelemetry, Zipkin,
 * Datadog, Sentry; Cloudflare's ray id): behind one, every fill carries them, each time with
 * a new value.
 */
const PER_REQUEST_FIELDS = [
  "b3",
  "baggage",
  "cf-ray",
  "sentry-trace",
  "traceparent",
  "tracestate",
  "x-amzn-trace-id",
  "x-b3-flags",
  "x-b3-parentspanid",
  "x-b3-sampled",
  "x-b3-spanid",
  "x-b3-traceid",
  "x-cloud-trace-context",
  "x-correlation-id",
  "x-datadog-origin",
  "x-datadog-parent-id",
  "x-datadog-sampling-priority",
  "x-datadog-trace-id",
  "x-request-id",
  "x-request-start",
];
const PER_REQUEST: ReadonlySet<string> = new Set(PER_REQUEST_FIELDS);

/**
 * Request headers an ordinary visitor's request carries on a shared fill (browsers, crawlers,
 * HTTP libraries), those herdless writes itself, and those Cloudflare's edge adds before the
 * Worker runs. A header outside them is an input of this client's own.
 */
const ORDINARY_FILL_HEADERS = new Set([
  "accept",
  "accept-charset",
  "accept-encoding",
  "accept-language",
  "cache-control",
  "dnt",
  "origin",
  "pragma",
  "priority",
  "purpose",
  "referer",
  "save-data",
  "upgrade-insecure-requests",
  "user-agent",
  "x-requested-with",
  // Prefetch marks and the client hints Chrome sends without a Sec-CH- prefix once asked to.
  "x-purpose",
  "x-moz",
  "device-memory",
  "downlink",
  "dpr",
  "ect",
  "rtt",
  "viewport-width",
  "width",
  // Crawlers name their operator.
  "from",
  ...PER_REQUEST_FIELDS,
  // Envoy's client address, on every request behind one (a client's own is stripped by default).
  "x-envoy-external-address",
  // herdless's own (origin.hostHeader, forwardedHeaders, a revalidation's validators).
  "host",
  "if-none-match",
  "if-modified-since",
  "x-forwarded-for",
  "x-forwarded-proto",
  "via",
  "surrogate-capability",
  // Cloudflare's edge, in front of the Worker.
  "cdn-loop",
  "cf-ew-via",
  "cf-visitor",
  "cf-worker",
  // Its visitor location headers (a managed transform), on every request of a zone that turns them on.
  "cf-ipcity",
  "cf-ipcontinent",
  "cf-iplatitude",
  "cf-iplongitude",
  "cf-metro-code",
  "cf-postal-code",
  "cf-region",
  "cf-region-code",
  "cf-timezone",
]);

/** Families of ordinary headers: fetch metadata (`Sec-Fetch-*`), client hints (`Sec-CH-*`), `Sec-GPC`, `Sec-Purpose`. */
const ORDINARY_FILL_PREFIXES = ["sec-fetch-", "sec-ch-", "sec-gpc", "sec-purpose"];

/** The part of the config clientInput reads: the deployment's own ordinary headers. */
export interface OrdinaryHeadersConfig {
  readonly origin: { readonly ordinaryRequestHeaders: readonly string[] };
}

const NONE_LISTED: OrdinaryHeadersConfig = { origin: { ordinaryRequestHeaders: [] } };

/** Visible ASCII, SP and HTAB only: what every HTTP server accepts in a field value. */
export function isPlainAscii(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c > 0x7e || (c < 0x20 && c !== 0x09)) return false;
  }
  return true;
}

/** The bytes of a request head's fields, as HTTP/1.1 writes them (`name: value\r\n`). */
function headBytes(headers: readonly (readonly [string, string])[]): number {
  let bytes = 0;
  for (const [name, value] of headers) bytes += name.length + value.length + 4;
  return bytes;
}

/**
 * Whether a fill's headers are unusually large: over 4 KiB, or more than 64 fields. What an
 * origin may refuse for their size alone.
 */
export function unusuallyLargeHead(headers: readonly (readonly [string, string])[]): boolean {
  return headBytes(headers) > UNUSUAL_FILL_HEAD_BYTES || headers.length > UNUSUAL_FILL_FIELDS;
}

/**
 * What in a fill's request (the headers it sends the origin, see forward.ts) is this client's
 * own rather than what any visitor sends: a header outside the ordinary ones (a custom
 * `X-…`, a `Cookie` or `Authorization` on a route that caches them), a value outside visible
 * ASCII, or unusually large headers. Undefined for an ordinary request. A sick answer to such a request may be the
 * origin failing on that input (a gateway's 502 on a header its application chokes on, a
 * handler that stalls on it), not on the URL: it must not back the key off for everyone.
 *
 * The deployment's `origin.ordinaryRequestHeaders` (headers its every visitor sends) are
 * ordinary too.
 *
 * @example
 * clientInput([["accept", "text/html"], ["x-evil", "1"]], config); // "the x-evil header"
 * clientInput([["x-app-version", "7"]], { origin: { ordinaryRequestHeaders: ["X-App-Version"] } }); // undefined
 */
export function clientInput(
  headers: readonly (readonly [string, string])[],
  config: OrdinaryHeadersConfig = NONE_LISTED,
): string | undefined {
  const alsoOrdinary = config.origin.ordinaryRequestHeaders;
  for (const [rawName, value] of headers) {
    const name = rawName.toLowerCase();
    const ordinary =
      ORDINARY_FILL_HEADERS.has(name) ||
      ORDINARY_FILL_PREFIXES.some((prefix) => name.startsWith(prefix)) ||
      alsoOrdinary.some((extra) => extra.toLowerCase() === name);
    if (!ordinary) return `the ${name} header`;
    // obs-text (`Accept-Language: é`): Node and workerd pass it on, an application may choke on
    // it. Cloudflare's own (a city name) are not the client's.
    if (!isPlainAscii(value) && !name.startsWith("cf-")) return `a value of ${name} outside visible ASCII`;
  }
  return unusuallyLargeHead(headers) ? `${headers.length} fields, ${headBytes(headers)} bytes of headers` : undefined;
}

/**
 * What of a fill's header field tells its request apart from another's (asked-by.ts): an
 * ordinary field or a credential by its value (`Accept-Language: xx`); one of the client's own inputs by its
 * name alone (`X-Debug`: its value may be new on each request, as the conformance suite's
 * `Req-Num` is); a request id or trace context (new on every request) not at all.
 *
 * @example
 * tellsApartBy("user-agent"); // "value"
 */
export function tellsApartBy(name: string): "value" | "name" | undefined {
  if (PER_REQUEST.has(name)) return undefined;
  // Credentials a route caches (a route's `cacheAuthorized`): one client's wrong token is not another's.
  if (name === "authorization" || name === "cookie") return "value";
  return ORDINARY_FILL_HEADERS.has(name) || ORDINARY_FILL_PREFIXES.some((prefix) => name.startsWith(prefix))
    ? "value"
    : "name";
}
