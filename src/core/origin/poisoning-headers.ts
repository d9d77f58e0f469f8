/**
 * Override headers that classic cache-poisoning attacks use: an origin (or its framework)
 * that trusts them builds links, redirects or routes from a value the client chose, and the
 * answer is then stored for everyone. Stripped from every origin request unless the operator
 * changes `origin.stripRequestHeaders`. The scheme overrides (`X-Forwarded-Ssl: on`,
 * `Front-End-Https`, `X-Url-Scheme`, `X-Forwarded-Protocol`) are among them: Rack, Rails and
 * IIS modules read them before `X-Forwarded-Proto`, so one forged by a client would turn the
 * scheme herdless reports into the attacker's (https links on an http-only site, or a
 * redirect loop) in the stored page.
 */
export const DEFAULT_STRIPPED_REQUEST_HEADERS: readonly string[] = [
  "forwarded",
  "x-forwarded-host",
  "x-forwarded-server",
  "x-forwarded-scheme",
  "x-forwarded-port",
  "x-forwarded-prefix",
  "x-forwarded-ssl",
  "x-forwarded-protocol",
  "front-end-https",
  "x-url-scheme",
  // Tornado (xheaders) reads X-Scheme, Jetty X-Proxied-Https, before the scheme herdless reports.
  "x-scheme",
  "x-proxied-https",
  // Scheme claims PHP sites read to set HTTPS (WordPress configs, the Cloudflare and SSL
  // plugins: CF-Visitor's {"scheme":…}, CloudFront-Forwarded-Proto, X-Proto: SSL; Azure App
  // Service's X-ARR-SSL and X-AppService-Proto), as do Plack and Django settings
  // (X-Forwarded-Https).
  "cf-visitor",
  "cloudfront-forwarded-proto",
  "x-proto",
  "x-arr-ssl",
  "x-appservice-proto",
  "x-forwarded-https",
  "x-host",
  "x-original-host",
  // A Host override some frameworks and rewrite rules honour (PortSwigger's Param Miner list).
  "x-http-host-override",
  "x-original-url",
  "x-rewrite-url",
  // Path and mount-point overrides that WSGI and PHP apps behind rewrites route or link by
  // (X-Script-Name in Flask's ReverseProxied recipe, pgAdmin, Radicale; X-Original-URI from
  // nginx, X-Forwarded-Uri from Traefik, X-Forwarded-Path from Kong).
  "x-script-name",
  "x-original-uri",
  "x-forwarded-uri",
  "x-forwarded-path",
  // The path before a proxy rewrote it, which apps and authorization hooks behind Envoy (Istio)
  // or a rewriting gateway read as the one asked for.
  "x-envoy-original-path",
  "x-original-path",
  "x-rewrite-path",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  // The request method as a proxy's auth subrequest carries it (Traefik, nginx ingress), which
  // some FastCGI configs map to REQUEST_METHOD (`fastcgi_param REQUEST_METHOD
  // $http_x_forwarded_method`).
  "x-forwarded-method",
  "x-original-method",
  // Next.js's own internal headers, which no browser sends: a client's x-middleware-subrequest
  // naming the middleware made Next.js skip it (CVE-2025-29927, before 15.2.3: its auth check,
  // locale rewrite or security headers), and x-now-route-matches made a server-rendered page
  // answer `s-maxage=1, stale-while-revalidate` (CVE-2024-46982, before 14.2.10): either way
  // the page built for that request was stored for everyone.
  "x-middleware-subrequest",
  "x-now-route-matches",
  // The rest of what Next.js filters from a client's request itself (filterInternalHeaders),
  // which no browser sends. Before its June 2024 fix a client's `x-invoke-status: 200` made
  // Next.js answer its error page with status 200, stored as the page for everyone;
  // `x-invoke-path`, `x-invoke-query` and `x-matched-path` pick the page rendered, the
  // `x-middleware-*` ones what the middleware decided (a rewrite, a redirect, to skip it) and
  // the cookies and headers the page is rendered with.
  "x-invoke-status",
  "x-invoke-error",
  "x-invoke-path",
  "x-invoke-query",
  "x-invoke-output",
  "x-middleware-invoke",
  "x-matched-path",
  "x-middleware-rewrite",
  "x-middleware-redirect",
  "x-middleware-next",
  "x-middleware-skip",
  "x-middleware-set-cookie",
  "x-middleware-override-headers",
  // Client-address claims (Nginx, Akamai, Rack, Express and PHP read them before the socket
  // address): a forged one would pick the country, language or rate-limit bucket of a page
  // stored for everyone. herdless sends the client's address in X-Forwarded-For instead.
  "x-real-ip",
  "true-client-ip",
  "x-client-ip",
  "x-cluster-client-ip",
  // The ones the common PHP "client IP" helpers try first (HTTP_CLIENT_IP, HTTP_X_FORWARDED,
  // HTTP_FORWARDED_FOR), and Fastly's, which an app moved off Fastly may still trust.
  "client-ip",
  "x-forwarded",
  "forwarded-for",
  "x-originating-ip",
  "x-remote-ip",
  "x-remote-addr",
  "fastly-client-ip",
  // What Java's "client IP" helpers try after X-Forwarded-For (WebLogic's WL-Proxy-Client-IP,
  // Proxy-Client-IP), and the client headers of other platforms and proxies an app may trust:
  // Fly.io, Azure Front Door, Netlify, DigitalOcean App Platform, Shopify Oxygen, Envoy,
  // ingress-nginx's copy of the chain it was sent.
  "proxy-client-ip",
  "wl-proxy-client-ip",
  "x-proxyuser-ip",
  "x-forwarded-client-ip",
  "x-real-client-ip",
  "fly-client-ip",
  "x-azure-clientip",
  "x-azure-socketip",
  "x-nf-client-connection-ip",
  "do-connecting-ip",
  "oxygen-buyer-ip",
  "x-envoy-external-address",
  "x-original-forwarded-for",
  // Cloudflare's word for the client: genuine only when Cloudflare wrote it, and even then the
  // first requester's, so its address or country would pick the page stored for everyone.
  "cf-connecting-ip",
  "cf-connecting-ipv6",
  "cf-pseudo-ipv4",
  "cf-ipcountry",
  // The visitor location headers of Cloudflare's managed transform, and the same claims of
  // other CDNs and platforms an app may have moved from (CloudFront, Vercel, App Engine,
  // Akamai): each picks the country, city, language or device version of a page stored for
  // everyone, from a value the client wrote.
  "cf-ipcity",
  "cf-ipcontinent",
  "cf-iplatitude",
  "cf-iplongitude",
  "cf-region",
  "cf-region-code",
  "cf-metro-code",
  "cf-postal-code",
  "cf-timezone",
  "cloudfront-viewer-address",
  "cloudfront-viewer-country",
  "cloudfront-viewer-country-name",
  "cloudfront-viewer-country-region",
  "cloudfront-viewer-country-region-name",
  "cloudfront-viewer-city",
  "cloudfront-viewer-postal-code",
  "cloudfront-viewer-time-zone",
  "cloudfront-viewer-latitude",
  "cloudfront-viewer-longitude",
  "cloudfront-viewer-metro-code",
  "cloudfront-is-mobile-viewer",
  "cloudfront-is-tablet-viewer",
  "cloudfront-is-desktop-viewer",
  "cloudfront-is-smarttv-viewer",
  "cloudfront-is-android-viewer",
  "cloudfront-is-ios-viewer",
  "x-vercel-ip-country",
  "x-vercel-ip-country-region",
  "x-vercel-ip-city",
  "x-vercel-ip-latitude",
  "x-vercel-ip-longitude",
  "x-vercel-ip-timezone",
  "x-vercel-ip-postal-code",
  "x-vercel-forwarded-for",
  "x-appengine-country",
  "x-appengine-region",
  "x-appengine-city",
  "x-appengine-citylatlong",
  "x-appengine-user-ip",
  "x-akamai-edgescape",
  // Sent by Next.js's client router on prefetches: with it a Next.js before 13.4.20 answered an
  // empty `{}` marked `s-maxage` (CVE-2023-46298), stored as the page for everyone. Stripped, a
  // prefetch gets the page's data, as a navigation does (`X-Nextjs-Data` is passed on: see
  // docs/security.md).
  "x-middleware-prefetch",
  // Nuxt 3 before 3.4 rendered any request carrying it as the client-only shell, without the
  // page's server-rendered content (nuxt/nuxt#20024 made it opt-in: it "allows third-parties to
  // control the behaviour of the Nuxt renderer"), marked as the route caches the page: stored
  // for everyone, crawlers included.
  "x-nuxt-no-ssr",
];
