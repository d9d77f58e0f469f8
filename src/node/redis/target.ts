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
  const sentinel = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/@]+)\/([^/]+)(?:\/(\d+))?\/?$/.exec(text);
  if (sentinel) {
    const [, username, password, hosts, name, db] = sentinel;
    return {
      kind: "sentinel",
      sentinels: nodesOf(hosts!, value, 26379),
      name: decodeURIComponent(name!),
      ...credentials(username, password),
      ...(db === undefined ? {} : { db: Number(db) }),
    };
  }
  const cluster = /^redis\+cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/@]+)\/?$/.exec(text);
  if (cluster) {
    const [, username, password, hosts] = cluster;
    return { kind: "cluster", nodes: nodesOf(hosts!, value, 6379), ...credentials(username, password) };
  }
  if (text.includes(",")) {
    const urls = text.split(",").map((part) => singleUrl(part.trim(), value));
    const first = urls[0]!;
    return {
      kind: "cluster",
      nodes: urls.map((url) => ({ host: url.hostname, port: Number(url.port || 6379) })),
      ...credentials(first.username, first.password),
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
  const creds = credentials(text("username"), text("password"));
  if (block.sentinels !== undefined) {
    const name = text("name");
    if (!name)
      throw invalid('redis.name (the master name Sentinel watches, e.g. "mymaster") is required with sentinels');
    const db = block.db;
    if (db !== undefined && !(Number.isInteger(db) && (db as number) >= 0))
      throw invalid(`redis.db must be a whole number ≥ 0, got ${JSON.stringify(db)}`);
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

/** The target for logs and error messages: hosts, never credentials. */
export function describeRedisTarget(target: RedisTarget): string {
  const hosts = (nodes: RedisNode[]) => nodes.map((n) => `${n.host}:${n.port}`).join(",");
  if (target.kind === "sentinel") return `redis+sentinel://${hosts(target.sentinels)}/${target.name}`;
  if (target.kind === "cluster") return `redis+cluster://${hosts(target.nodes)}`;
  try {
    const url = new URL(target.url);
    url.username = "";
    url.password = "";
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
      throw invalid(`redis: ${JSON.stringify(part)} in ${value} is not host:port; ${USAGE}`);
    return { host: match[1], port };
  });
}

function singleUrl(text: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`redis: ${JSON.stringify(value)} is not a URL; ${USAGE}`);
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:")
    throw invalid(`redis: ${JSON.stringify(value)} has scheme ${url.protocol}; ${USAGE}`);
  return url;
}

function credentials(username: string | undefined, password: string | undefined): Credentials {
  return {
    ...(username ? { username: decodeURIComponent(username) } : {}),
    ...(password ? { password: decodeURIComponent(password) } : {}),
  };
}

function invalid(message: string): HerdlessError {
  return new HerdlessError("CONFIG_INVALID", message);
}
