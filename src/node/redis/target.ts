import { HerdlessError } from "../../core/errors.ts";

export interface RedisNode {
  host: string;
  port: number;
}

interface Credentials {
  username?: string;
  password?: string;
}

/**
 * Where the fleet's Redis is: one server, a Sentinel-watched master (clients follow a
 * failover), or a Cluster (keys spread over masters by hash slot).
 */
export type RedisTarget =
  | { kind: "single"; url: string }
  | ({ kind: "sentinel"; sentinels: RedisNode[]; name: string; db?: number; sentinelPassword?: string } & Credentials)
  | ({ kind: "cluster"; nodes: RedisNode[] } & Credentials);

const USAGE =
  "expected redis://[user:password@]host:port[/db], rediss://…, redis+sentinel://[user:password@]host:port[,host:port…]/master-name[/db], or a Cluster as redis+cluster://host:port[,host:port…] (or several redis:// URLs separated by commas)";

/**
 * Reads `--redis` (or the config file's `redis` string): one URL, a Sentinel URL, or a
 * Cluster node list. Errors name the value and the accepted forms.
 *
 * @example
 * parseRedisTarget("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster");
 * parseRedisTarget("redis://10.0.0.1:7000,redis://10.0.0.2:7000,redis://10.0.0.3:7000");
 */
export function parseRedisTarget(value: string): RedisTarget {
  const text = value.trim();
  if (text === "") throw invalid(`redis is empty; ${USAGE}`);
  const sentinel = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/@]+)\/([^/]+)(?:\/(\d+))?\/?$/.exec(text);
  if (sentinel) {
    const [, username, password, hosts, name, db] = sentinel;
    return {
      kind: "sentinel",
      sentinels: nodesOf(hosts!, value, 26379),
      name: decoded(name!, value),
      ...credentials(username, password, value),
      ...(db === undefined ? {} : { db: dbIndex(db, value) }),
    };
  }
  const cluster = /^redis\+cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/@]+)\/?$/.exec(text);
  if (cluster) {
    const [, username, password, hosts] = cluster;
    return { kind: "cluster", nodes: nodesOf(hosts!, value, 6379), ...credentials(username, password, value) };
  }
  if (text.includes(",")) {
    const urls = text.split(",").map((part) => singleUrl(part.trim(), value));
    const first = urls[0]!;
    return {
      kind: "cluster",
      nodes: urls.map((url) => ({ host: url.hostname, port: Number(url.port || 6379) })),
      ...credentials(first.username, first.password, value),
    };
  }
  singleUrl(text, value);
  return { kind: "single", url: text };
}

/**
 * Reads the config file's `redis` value: a string as {@link parseRedisTarget}, or a block
 * `{ "sentinels": ["host:port", …], "name": "mymaster", "password"?, "sentinelPassword"?, "db"? }`
 * or `{ "cluster": ["host:port", …], "password"? }` (`username` too, for ACLs).
 */
export function redisTargetFromConfig(value: unknown): RedisTarget {
  if (typeof value === "string") return parseRedisTarget(value);
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw invalid(`redis must be a URL string or an object, got ${JSON.stringify(value)}`);
  const block = value as Record<string, unknown>;
  const known = new Set(["sentinels", "name", "cluster", "username", "password", "sentinelPassword", "db"]);
  for (const field of Object.keys(block))
    if (!known.has(field)) throw invalid(`redis.${field} is not a known field (known: ${[...known].join(", ")})`);
  const text = (field: string): string | undefined => {
    const v = block[field];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") throw invalid(`redis.${field} must be a non-empty string`);
    return v;
  };
  const list = (field: string, defaultPort: number): RedisNode[] => {
    const v = block[field];
    if (!Array.isArray(v) || v.length === 0 || !v.every((n) => typeof n === "string"))
      throw invalid(`redis.${field} must be a non-empty list of "host:port" strings`);
    return nodesOf((v as string[]).join(","), JSON.stringify(v), defaultPort);
  };
  // Written as they are, not %-escaped as in a URL.
  const [username, password] = [text("username"), text("password")];
  const creds = { ...(username ? { username } : {}), ...(password ? { password } : {}) };
  if (block.sentinels !== undefined) {
    const name = text("name");
    if (!name)
      throw invalid('redis.name (the master name Sentinel watches, e.g. "mymaster") is required with sentinels');
    const db = block.db;
    if (db !== undefined && !(Number.isInteger(db) && (db as number) >= 0 && (db as number) <= MAX_DB))
      throw invalid(`redis.db must be a whole number from 0 to ${MAX_DB}, got ${JSON.stringify(db)}`);
    const sentinelPassword = text("sentinelPassword");
    return {
      kind: "sentinel",
      sentinels: list("sentinels", 26379),
      name,
      ...creds,
      ...(db === undefined ? {} : { db: db as number }),
      ...(sentinelPassword ? { sentinelPassword } : {}),
    };
  }
  if (block.cluster !== undefined) return { kind: "cluster", nodes: list("cluster", 6379), ...creds };
  throw invalid('redis needs "sentinels" (with "name") or "cluster"');
}

/** The target for logs and error messages: hosts, never credentials (nor a query, which may hold a password). */
export function describeRedisTarget(target: RedisTarget): string {
  const hosts = (nodes: RedisNode[]) => nodes.map((n) => `${n.host}:${n.port}`).join(",");
  if (target.kind === "sentinel") return `redis+sentinel://${hosts(target.sentinels)}/${target.name}`;
  if (target.kind === "cluster") return `redis+cluster://${hosts(target.nodes)}`;
  try {
    const url = new URL(target.url);
    url.username = "";
    url.password = "";
    url.search = "";
    url.hash = "";
    return url.toString();
  } catch {
    return "(unparseable url)";
  }
}

function nodesOf(hosts: string, value: string, defaultPort: number): RedisNode[] {
  return hosts.split(",").map((part) => {
    const match = /^\[?([^\]]+?)\]?(?::(\d{1,5}))?$/.exec(part.trim());
    const port = Number(match?.[2] ?? defaultPort);
    if (!match || !match[1] || port < 1 || port > 65535)
      throw invalid(`redis: ${JSON.stringify(part)} in ${redacted(value)} is not host:port; ${USAGE}`);
    return { host: match[1], port };
  });
}

function singleUrl(text: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`redis: ${JSON.stringify(redacted(value))} is not a URL; ${USAGE}`);
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:")
    throw invalid(`redis: ${JSON.stringify(redacted(value))} has scheme ${url.protocol}; ${USAGE}`);
  // A URL parser takes `redis://` and `redis://:pw@` with no host: the client would try localhost.
  if (url.hostname === "") throw invalid(`redis: ${JSON.stringify(redacted(value))} names no host; ${USAGE}`);
  const db = /^\/?(?:(\d+)\/?)?$/.exec(url.pathname);
  if (!db)
    throw invalid(
      `redis: ${JSON.stringify(redacted(value))} has path ${url.pathname}, not a database number; ${USAGE}`,
    );
  if (db[1] !== undefined) dbIndex(db[1], value);
  return url;
}

/** Databases a Redis server may be configured with: far beyond its default 16, short of a typo's size. */
const MAX_DB = 65_535;

function dbIndex(digits: string, value: string): number {
  const db = Number(digits);
  if (db > MAX_DB)
    throw invalid(`redis: ${JSON.stringify(redacted(value))} has database ${digits}; it must be from 0 to ${MAX_DB}`);
  return db;
}

function credentials(username: string | undefined, password: string | undefined, value: string): Credentials {
  return {
    ...(username ? { username: decoded(username, value) } : {}),
    ...(password ? { password: decoded(password, value) } : {}),
  };
}

/** A %-escaped part of the value; a malformed escape names the value (redacted), not "URI malformed". */
function decoded(part: string, value: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw invalid(`redis: ${JSON.stringify(redacted(value))} has a malformed %-escape (write % as %25); ${USAGE}`);
  }
}

/**
 * The value as an error may print it: any `user:password@` and any password in the query
 * replaced, since errors reach logs and terminals.
 */
function redacted(value: string): string {
  return value
    .replace(/\/\/[^/]*@/g, "//<credentials>@")
    .replace(/([?&](?:password|pass|sentinelPassword)=)[^&#]*/gi, "$1<redacted>");
}

function invalid(message: string): HerdlessError {
  return new HerdlessError("CONFIG_INVALID", message);
}
