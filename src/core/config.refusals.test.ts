import { describe, expect, it } from "vitest";
import { parseConfig } from "./config.ts";

const origin = { url: "http://127.0.0.1:8080" };
const ORIGIN_KEYS =
  "url, timeoutMs, maxConcurrency, maxQueue, maxWaiting, queueTimeoutMs, streamIdleTimeoutMs, streamTimeoutMs, readAheadBytes, readAheadBudgetBytes, notFoundTtlMs, errorTtlMs, hostHeader, rewriteRedirects, stripRequestHeaders, ordinaryRequestHeaders, forwardedHeaders, trustForwardedProto, webSockets, maxWebSockets, webSocketIdleTimeoutMs";
const LEASE =
  "coordinator.lockLeaseMs: coordinator.lockLeaseMs must be greater than origin.timeoutMs, so a lease outlives the origin request it protects (got its default)";
const WAIT =
  "coordinator.waitTimeoutMs: coordinator.waitTimeoutMs must be greater than origin.timeoutMs, so a request waiting on another's fetch outlives it: raise waitTimeoutMs or lower origin.timeoutMs (got its default)";
const ASCII =
  "admin.token must be visible ASCII only (letters, digits, punctuation; no spaces, control characters or accented letters), what an Authorization header carries as written";

function linesOf(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (error) {
    const [head, ...lines] = (error as Error).message.split("\n  - ");
    expect(head).toBe("invalid herdless config:");
    return lines;
  }
  throw new Error("config was accepted");
}

/**
 * Every line of a refusal, whole: which problems are told together and which wait for an
 * earlier one to be fixed. (These are the lines herdless gave while the schema was checked with
 * zod; the port to valibot keeps them.)
 */
describe("config: a refusal tells exactly these lines", () => {
  it.each<[string, unknown, string[]]>([
    [
      "a fraction is told it must be whole, and the rules across fields wait for it",
      { origin: { ...origin, timeoutMs: 20_000.5 } },
      ["origin.timeoutMs: origin.timeoutMs must be a whole number of milliseconds (got 20000.5)"],
    ],
    [
      "a number out of range still has the rules across fields checked",
      { origin: { ...origin, timeoutMs: 3_000_000_000 } },
      [
        "origin.timeoutMs: origin.timeoutMs must be at most 2147483647 ms (about 24.8 days): a longer timer cannot be honoured (got 3000000000)",
        LEASE,
        WAIT,
      ],
    ],
    [
      "every unknown option is named, and the rules across fields are still checked",
      { origin: { ...origin, timeoutMs: 20_000, tmeout: 1, foo: 2 } },
      [
        `origin.tmeout: unknown option; accepted: ${ORIGIN_KEYS}`,
        `origin.foo: unknown option; accepted: ${ORIGIN_KEYS}`,
        LEASE,
        WAIT,
      ],
    ],
    [
      "a value of the wrong type leaves the rules across fields for later",
      { origin: { ...origin, timeoutMs: 20_000 }, log: { level: 3 } },
      ['log.level: Invalid option: expected one of "debug"|"info"|"warn"|"error"|"silent" (got 3)'],
    ],
    [
      "Infinity is not a number of milliseconds",
      { origin: { ...origin, timeoutMs: Infinity } },
      ["origin.timeoutMs: origin.timeoutMs must be a number of milliseconds (got Infinity)"],
    ],
    [
      "NaN is not a number",
      { origin, breaker: { failureRate: NaN } },
      ["breaker.failureRate: Invalid input: expected number, received NaN (got NaN)"],
    ],
    [
      "an integer past the exact range is not whole, and out of range",
      { origin: { ...origin, timeoutMs: 2 ** 60 } },
      [
        "origin.timeoutMs: origin.timeoutMs must be a whole number of milliseconds (got 1152921504606847000)",
        "origin.timeoutMs: origin.timeoutMs must be at most 2147483647 ms (about 24.8 days): a longer timer cannot be honoured (got 1152921504606847000)",
        LEASE,
        WAIT,
      ],
    ],
    [
      "each bad status of a list is named",
      { origin, breaker: { failureStatuses: [1.5, 2 ** 60, 600, "x"] } },
      [
        "breaker.failureStatuses.0: Invalid input: expected int, received number (got 1.5)",
        "breaker.failureStatuses.1: Too big: expected int to be <=9007199254740991 (got 1152921504606847000)",
        "breaker.failureStatuses.1: breaker.failureStatuses must list 5xx statuses (got 1152921504606847000)",
        "breaker.failureStatuses.2: breaker.failureStatuses must list 5xx statuses (got 600)",
        'breaker.failureStatuses.3: Invalid input: expected number, received string (got "x")',
      ],
    ],
    [
      "a list for a name is told both that it is no string and too short",
      { origin, cache: { name: [] } },
      [
        "cache.name: Invalid input: expected string, received array (got [])",
        "cache.name: Too small: expected array to have >=1 items (got [])",
      ],
    ],
    [
      "a route pattern not starting with / is not checked further, nor its timeout against the lease",
      { origin, routes: [{ match: "a*b*", timeoutMs: 30_000 }] },
      ['routes.0.match: match must start with / (for example /static/*) (got "a*b*")'],
    ],
    [
      "a route's timeout past the lease leaves the Redis bound and backoff rules for later",
      { origin, routes: [{ match: "/r", timeoutMs: 30_000 }], breaker: { backoffBaseMs: 5_000, backoffMaxMs: 1_000 } },
      [
        "routes.0.timeoutMs: timeoutMs must be less than coordinator.lockLeaseMs (15000) and coordinator.waitTimeoutMs (20000) on a route that caches: its fill holds the key's lease while requests for the key wait on it; raise both, or make the route bypass: true (got 30000)",
      ],
    ],
    [
      "a Host header of another type",
      { origin: { ...origin, hostHeader: 5 } },
      ["origin.hostHeader: Invalid input (got 5)"],
    ],
    [
      "a Host header that is no host name",
      { origin: { ...origin, hostHeader: "bad host" } },
      [
        'origin.hostHeader: origin.hostHeader must be "origin", "client" or a host name such as www.example.com (got "bad host")',
      ],
    ],
    [
      "an admin token's length is counted in characters, not UTF-16 units",
      { origin, admin: { token: "😀".repeat(10) } },
      [
        "admin.token: admin.token must be at least 16 characters (got 20 characters)",
        `admin.token: ${ASCII} (got 20 characters)`,
      ],
    ],
    [
      "an admin token of another type is described, never repeated (a number, a list)",
      { origin, admin: { token: 1234567890123456 } },
      ["admin.token: Invalid input: expected string, received number (got a number)"],
    ],
    [
      "an admin token given as a list is described, never repeated, nor its items",
      { origin, admin: { token: ["secretsecretsecret1"] } },
      [
        "admin.token: Invalid input: expected string, received array (got a list)",
        "admin.token: admin.token must be at least 16 characters (got a list)",
      ],
    ],
    ["a list for the config", [], ["(root): Invalid input: expected object, received array (got [])"]],
    ["a list for a section", { origin: [] }, ["origin: Invalid input: expected object, received array (got [])"]],
    [
      "a missing origin URL",
      { origin: {} },
      ["origin.url: origin.url must be an absolute http(s) URL such as http://127.0.0.1:8080 (got missing)"],
    ],
    [
      "an origin URL with credentials is not checked further",
      { origin: { url: "http://u:p@h/?q" } },
      [
        'origin.url: origin.url must not hold credentials (user:password@): they are never sent to the origin (got "http://…@h/?q")',
      ],
    ],
    [
      "an origin URL that is no URL and has a query",
      { origin: { url: "nope?x" } },
      [
        'origin.url: origin.url must be an absolute http(s) URL such as http://127.0.0.1:8080 (got "nope?x")',
        'origin.url: origin.url must not have a query or fragment: each origin request carries its client\'s query (got "nope?x")',
      ],
    ],
    [
      // JSON's 1e400 is Infinity: before, "(got null)", a value the operator never wrote.
      "a number too large for JSON is shown as Infinity, not null",
      JSON.parse('{"origin":{"url":"http://127.0.0.1:1","maxConcurrency":1e400}}') as unknown,
      ["origin.maxConcurrency: origin.maxConcurrency must be a number (got Infinity)"],
    ],
    [
      // Before: accepted, and a fleet process with it printed the Redis prefix error and never exited.
      "a cache name with a Redis Cluster hash tag's braces",
      { origin, cache: { name: "site{a}" } },
      [
        'cache.name: cache.name must not contain { or }: it is part of the Redis key prefix, where braces are Cluster hash tags (got "site{a}")',
      ],
    ],
    [
      "an origin URL of another scheme is told once",
      { origin: { url: "ftp://x" } },
      ['origin.url: origin.url must be an absolute http(s) URL such as http://127.0.0.1:8080 (got "ftp://x")'],
    ],
    ...["http:///app", "https:///index.html", "http://127.0.0.1:0", "http://[::1]:00/app"].map(
      (url): [string, unknown, string[]] => [
        // `http://${HOST}/app` with HOST unset: before, the origin was the host "app".
        `an origin URL without a host, or with port 0: ${url}`,
        { origin: { url } },
        [
          `origin.url: origin.url must name the origin's host and port, as http://HOST[:PORT][/prefix] (an unset variable in it?) (got ${JSON.stringify(url)})`,
        ],
      ],
    ),
  ])("%s", (_, input, lines) => {
    expect(linesOf(input)).toEqual(lines);
  });

  it("takes the origin URL without its surrounding spaces, tabs and line breaks", () => {
    expect(parseConfig({ origin: { url: " http://127.0.0.1:8080/a\tb\n" } }).origin.url).toBe(
      "http://127.0.0.1:8080/ab",
    );
  });

  it("leaves an option out of the config when it was left out, and keeps one given as undefined", () => {
    const config = parseConfig({ origin: { ...origin, maxWaiting: undefined } });
    expect(Object.keys(config.origin)).toContain("maxWaiting");
    expect(Object.keys(config.server)).not.toContain("maxConnections");
  });
});
