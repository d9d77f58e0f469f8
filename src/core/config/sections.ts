import * as v from "valibot";
import { DEFAULT_STRIPPED_REQUEST_HEADERS } from "../origin/poisoning-headers.ts";
import {
  count,
  DEFAULT_READ_AHEAD_BUDGET_BYTES,
  DEFAULT_READ_AHEAD_BYTES,
  DEFAULT_MAX_WEB_SOCKETS,
  MAX_CACHE_BYTES,
  MAX_ENTRY_BYTES_LIMIT,
  ms,
  ttl,
} from "./fields.ts";
import {
  abortive,
  array,
  boolean,
  httpUrl,
  integer,
  lengthAtLeast,
  lengthAtMost,
  number,
  picklist,
  safeInteger,
  string,
  strictObject,
} from "./checks.ts";

/** `origin`: The origin and how hard it may be asked. */
export const originSection = strictObject({
  url: v.pipe(
    string("origin.url must be an absolute http(s) URL such as http://127.0.0.1:8080"),
    httpUrl("origin.url must be an absolute http(s) URL such as http://127.0.0.1:8080"),
    // Each origin request is origin.url's scheme, host and path plus the client's path and
    // query: anything else in it would be dropped without a word, credentials printed in the log.
    abortive(
      v.check(
        (url: string) => !/^[a-z]+:\/\/[^/?#]*@/i.test(url),
        "origin.url must not hold credentials (user:password@): they are never sent to the origin",
      ),
    ),
    v.check(
      (url) => !/[?#]/.test(url),
      "origin.url must not have a query or fragment: each origin request carries its client's query",
    ),
    // `http://${HOST}/app` with HOST unset is `http:///app`, which a URL parser reads as the
    // host "app": the origin would silently be another machine. Port 0 is no port to connect to.
    v.check(
      // Judged only on what the rule above takes for an http(s) URL (it names the rest).
      (url) =>
        !URL.canParse(url) ||
        !/^https?:\/\//i.test(url) ||
        (/^https?:\/\/[^/\\?#]/i.test(url) && new URL(url).port !== "0"),
      "origin.url must name the origin's host and port, as http://HOST[:PORT][/prefix] (an unset variable in it?)",
    ),
  ),
  /** Abort an origin request whose answer's head (and a body read whole) is not in after this long; a route may set its own. */
  timeoutMs: v.optional(ms("origin.timeoutMs", 1), 10_000),
  /** Concurrent origin requests across the whole deployment, all keys together. */
  maxConcurrency: v.optional(count("origin.maxConcurrency", 1, 100_000), 8),
  /** Cold misses waiting for an origin permit beyond this many get 503. */
  maxQueue: v.optional(count("origin.maxQueue", 0, 1_000_000), 1_000),
  /**
   * Node: requests one process holds waiting for an origin answer at once: collapsed onto
   * another request's fill, queued for a permit, or relayed and not yet answered. Past it a
   * request gets the stored copy or `503` at once, never held. Unset: derived from the heap
   * the process has (node/bounded-heap.ts maxWaitingFor). The Worker ignores it (docs/configuration.md).
   */
  maxWaiting: v.optional(count("origin.maxWaiting", 1, 10_000_000)),
  /** How long a cold miss waits for an origin permit before 503. */
  queueTimeoutMs: v.optional(ms("origin.queueTimeoutMs"), 10_000),
  /**
   * A streamed origin body (bypass, unsafe methods, pass) that sends nothing for this long is cut
   * off; so is a client that holds a shared body back from the others this long (a slow reader).
   */
  streamIdleTimeoutMs: v.optional(ms("origin.streamIdleTimeoutMs", 1), 30_000),
  /** A streamed origin body still running this long after its head is cut off; it holds an origin permit until then. */
  streamTimeoutMs: v.optional(ms("origin.streamTimeoutMs", 1), 300_000),
  /**
   * Bytes of a streamed origin body (relayed, uncacheable, or past cache.maxEntryBytes) read
   * ahead of a slow client, so a body that fits frees its origin permit and connection when
   * the origin finishes, not when the client does (nginx's proxy_buffering). 4 MiB: most
   * pages, API answers and images fit; 0 = read only as the client reads.
   */
  readAheadBytes: v.optional(count("origin.readAheadBytes", 0, MAX_ENTRY_BYTES_LIMIT), DEFAULT_READ_AHEAD_BYTES),
  /**
   * What every read-ahead of one Node process or Worker isolate may hold together; past it a
   * response is read as its client reads. 32 MiB: a full read-ahead for each of the default
   * 8 permits, a quarter of a Worker isolate's 128 MB, within the 100 MiB a Node process has
   * beside its cache (docs/security.md).
   */
  readAheadBudgetBytes: v.optional(
    count("origin.readAheadBudgetBytes", 0, MAX_CACHE_BYTES),
    DEFAULT_READ_AHEAD_BUDGET_BYTES,
  ),
  /** Cache 404 responses for this long (0 = do not). */
  notFoundTtlMs: v.optional(ttl("origin.notFoundTtlMs"), 0),
  /**
   * Opt-in negative caching: serve a 5xx without explicit freshness to everyone for this
   * long when no stale copy exists. Off (0) by default: RFC 9111 gives such an error only
   * to the requests that waited on its fetch; the breaker and the backoff protect the origin.
   */
  errorTtlMs: v.optional(ttl("origin.errorTtlMs"), 0),
  /** Host sent to the origin: its own (`origin`), the client's (`client`), or this name. */
  // "origin" and "client" are host names too: one rule, and a value of another type is told "Invalid input".
  hostHeader: v.optional(
    v.pipe(
      string("Invalid input"),
      v.regex(
        /^[A-Za-z0-9.-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/,
        'origin.hostHeader must be "origin", "client" or a host name such as www.example.com',
      ),
    ),
    "origin",
  ),
  /**
   * Rewrite a `Location` or `Content-Location` naming origin.url (its scheme, host, port and
   * path prefix) to the URL the client asked, as nginx's `proxy_redirect default` does.
   */
  rewriteRedirects: v.optional(boolean(), true),
  /** Request headers never sent to the origin (override headers used for cache poisoning). */
  stripRequestHeaders: v.optional(
    array(v.pipe(string(), v.regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "must be a header name"))),
    [...DEFAULT_STRIPPED_REQUEST_HEADERS],
  ),
  /**
   * Request headers every visitor's request carries in this deployment (an app's
   * `X-App-Version`, a header a proxy in front adds): counted as ordinary, not as a client's
   * own input, so a sick answer to a request carrying them still backs the key off and
   * counts by path for the breaker (client-inputs.ts).
   */
  ordinaryRequestHeaders: v.optional(
    array(v.pipe(string(), v.regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "must be a header name"))),
    [],
  ),
  /** Add X-Forwarded-For, X-Forwarded-Proto, Via and Surrogate-Capability to origin requests. */
  forwardedHeaders: v.optional(boolean(), true),
  /**
   * Node behind a TLS-terminating proxy: take the scheme the client used from the first
   * `X-Forwarded-Proto` entry (key the page by it, tell the origin it). Implied by
   * `forwardedHeaders: false`, where the proxy in front owns that header. The Worker always
   * knows the scheme (Cloudflare's edge gives it) and ignores this.
   */
  trustForwardedProto: v.optional(boolean(), false),
  /**
   * Tunnel WebSocket upgrades (`Upgrade: websocket`) to the origin, never cached: what a
   * transparent proxy does. Every other upgrade (`h2c`) is ignored whatever this says.
   */
  webSockets: v.optional(boolean(), true),
  /**
   * Open WebSocket tunnels one Node process or Worker isolate keeps at once (handshakes
   * included); past it an upgrade gets `503`. They hold no origin permit once open.
   */
  maxWebSockets: v.optional(count("origin.maxWebSockets", 1, 1_000_000), DEFAULT_MAX_WEB_SOCKETS),
  /** A WebSocket tunnel that carries no byte either way for this long is closed. */
  webSocketIdleTimeoutMs: v.optional(ms("origin.webSocketIdleTimeoutMs", 1_000), 120_000),
});

/** `coordinator`: The per-key coordinator's lease and wait. */
export const coordinatorSection = v.optional(
  strictObject({
    /** A lease on a key expires after this long if its holder dies. */
    lockLeaseMs: v.optional(ms("coordinator.lockLeaseMs", 1), 15_000),
    /** How long an edge waits on the coordinator before falling back. */
    waitTimeoutMs: v.optional(ms("coordinator.waitTimeoutMs", 1), 20_000),
    /**
     * How long a key whose answer could not be shared has its misses sent straight to the
     * origin instead of waiting on one another (fill/pass-marks.ts); 0 turns it off.
     */
    uncacheableMemoryMs: v.optional(ms("coordinator.uncacheableMemoryMs"), 120_000),
    /**
     * Cloudflare: where to create the key coordinators, the guard and the purge registry
     * (a Durable Object location hint): near the origin, so a fill is one short hop.
     */
    locationHint: v.optional(
      picklist(["wnam", "enam", "sam", "weur", "eeur", "apac", "apac-ne", "apac-se", "oc", "afr", "me"]),
    ),
  }),
  {},
);

/** `breaker`: When the origin counts as sick. */
export const breakerSection = v.optional(
  strictObject({
    /** Sick origin calls (timeouts, refused or reset connections, failureStatuses) in the window that open the breaker. */
    failureThreshold: v.optional(count("breaker.failureThreshold", 1, 1_000_000), 5),
    /** ...and the share of the window's calls they must be. */
    failureRate: v.optional(
      v.pipe(
        number(),
        v.minValue(0.01, "breaker.failureRate must be between 0.01 and 1"),
        v.maxValue(1, "breaker.failureRate must be between 0.01 and 1"),
      ),
      0.5,
    ),
    /** ...and how many distinct keys they must come from: one broken URL never opens the breaker. */
    minFailingKeys: v.optional(count("breaker.minFailingKeys", 1, 1_000), 3),
    /** The sliding window the breaker judges. */
    windowMs: v.optional(ms("breaker.windowMs", 100), 10_000),
    /** Origin statuses that are signs of a sick origin (counted by the breaker); any other answer proves it is up. */
    failureStatuses: v.optional(
      array(
        v.pipe(
          number(),
          integer(),
          safeInteger(),
          v.minValue(500, "breaker.failureStatuses must list 5xx statuses"),
          v.maxValue(599, "breaker.failureStatuses must list 5xx statuses"),
        ),
      ),
      [502, 503, 504],
    ),
    probeIntervalMs: v.optional(ms("breaker.probeIntervalMs", 1), 5_000),
    serveStaleWhileOpen: v.optional(boolean(), true),
    /**
     * Per-key backoff: after a sick origin call for a key (the kinds the breaker counts), the
     * key is not asked for again for this long, doubling with each sick call in a row up to
     * backoffMaxMs (with jitter), reset by any answer that proves the origin up. 0 = off.
     */
    backoffBaseMs: v.optional(ms("breaker.backoffBaseMs"), 1_000),
    /** The longest per-key backoff. */
    backoffMaxMs: v.optional(ms("breaker.backoffMaxMs", 1), 60_000),
  }),
  {},
);

/** `fleet`: A Node fleet sharing Redis. */
export const fleetSection = v.optional(
  strictObject({
    /**
     * Node fleet on Redis: while Redis is unreachable each process takes its share of
     * origin.maxConcurrency, for a fleet of the size it last saw in Redis but never fewer
     * processes than this (a process that never reached Redis assumes exactly this many).
     */
    minProcesses: v.optional(count("fleet.minProcesses", 1, 10_000), 1),
  }),
  {},
);

/** `server`: The Node server's own connections (the Worker's are Cloudflare's edge's). */
export const serverSection = v.optional(
  strictObject({
    /** Client connections one Node process holds at once (connection-cap.ts); unset: from the open-file limit. */
    maxConnections: v.optional(count("server.maxConnections", 1, 10_000_000)),
  }),
  {},
);

/**
 * What an admin token may hold: visible ASCII. No `Authorization` header carries anything
 * else as written: Node reads header bytes as latin1 (a UTF-8 `pässwörd` never matches, and
 * each try counts toward the wrong-token brake), parsers trim surrounding spaces, and
 * control characters are refused on the wire.
 */
export const ADMIN_TOKEN_CHARACTERS = /^[\x21-\x7e]+$/;

/** `admin`: The admin API: token, purge propagation, stats reports. */
export const adminSection = v.optional(
  strictObject({
    /** Bearer token for /__herdless/ (purge, stats, dashboard); unset disables the admin API. */
    token: v.optional(
      v.pipe(
        string(),
        lengthAtLeast(16, "admin.token must be at least 16 characters"),
        lengthAtMost(1024, "admin.token must be at most 1024 characters"),
        v.regex(
          ADMIN_TOKEN_CHARACTERS,
          "admin.token must be visible ASCII only (letters, digits, punctuation; no spaces, control characters or accented letters), what an Authorization header carries as written",
        ),
      ),
    ),
    /** Edges re-read the purge list at least this often; a purge returns after it, when every edge honours it. */
    purgePropagationMs: v.optional(ms("admin.purgePropagationMs", 10, 60_000), 1_000),
    /**
     * Workers: each isolate reports its counters to the deployment's stats object at most
     * this often (the last report waits under ctx.waitUntil, which lasts 30 s: hence the bound).
     */
    statsReportIntervalMs: v.optional(ms("admin.statsReportIntervalMs", 1_000, 25_000), 10_000),
  }),
  {},
);

/** `log`: What the adapters log. */
export const logSection = v.optional(
  strictObject({
    level: v.optional(picklist(["debug", "info", "warn", "error", "silent"]), "info"),
    /** One JSON line per request (method, target, status, Cache-Status, time taken), whatever `level` says. */
    access: v.optional(boolean(), false),
  }),
  {},
);
