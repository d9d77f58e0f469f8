/**
 * Override headers that classic cache-poisoning attacks use: an origin (or its framework)
 * that trusts them builds links, redirects or routes from a value the client chose, and the
 * answer is then stored for everyone. Stripped from every origin request unless the operator
 * changes `origin.stripRequestHeaders`.
 */
export const DEFAULT_STRIPPED_REQUEST_HEADERS: readonly string[] = [
  "forwarded",
  "x-forwarded-host",
  "x-forwarded-server",
  "x-forwarded-scheme",
  "x-forwarded-port",
  "x-forwarded-prefix",
  "x-host",
  "x-original-host",
  "x-original-url",
  "x-rewrite-url",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
];
