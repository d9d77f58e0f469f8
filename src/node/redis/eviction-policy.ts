import type { Cluster, Redis } from "ioredis";
import type { Logger } from "../logger.ts";
import type { RedisClient, RedisConnection } from "./connection.ts";

/** What a Redis server says of its memory limit: `maxmemory` (0 = none) and `maxmemory-policy`. */
export interface MemoryPolicy {
  maxmemory: number;
  policy: string;
}

/**
 * Reads a server's memory limit and eviction policy: `CONFIG GET`, else (managed Redis often
 * disables CONFIG) `INFO memory`; undefined when neither answers.
 */
export async function readMemoryPolicy(client: RedisClient): Promise<MemoryPolicy | undefined> {
  try {
    const reply = (await client.config("GET", "maxmemory*")) as string[];
    const fields = new Map<string, string>();
    for (let n = 0; n + 1 < reply.length; n += 2) fields.set(reply[n]!, reply[n + 1]!);
    const policy = fields.get("maxmemory-policy");
    if (policy !== undefined) return { policy, maxmemory: Number(fields.get("maxmemory") ?? 0) };
  } catch {
    // CONFIG disabled or renamed: INFO says the same.
  }
  try {
    const info = await client.info("memory");
    const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
    if (policy !== undefined) return { policy, maxmemory: Number(/^maxmemory:(\d+)/m.exec(info)?.[1] ?? 0) };
  } catch {
    // Neither answers: nothing to say.
  }
  return undefined;
}

/**
 * Warns when a Redis server's settings can break the fleet: an eviction policy other than
 * `noeviction` (`allkeys-*` evicts any key, `volatile-*` any key with a TTL: both include the
 * key leases, fences and origin-cap permits, so a full Redis lets two members fetch one key
 * and the cap overflow), or a `maxmemory` below what the stored entries may take
 * (`cache.sharedMaxBytes`: with `noeviction` every write, leases too, fails before herdless's
 * own bound evicts). Checks every master of a Cluster. Never fails: start-up goes on whatever
 * Redis answers.
 */
export async function warnOnMemoryPolicy(
  connection: RedisConnection,
  logger: Logger,
  sharedMaxBytes: number,
): Promise<void> {
  const client = connection.client;
  const servers = connection.target.kind === "cluster" ? (client as Cluster).nodes("master") : [client];
  for (const server of servers) {
    const read = await readMemoryPolicy(server).catch(() => undefined);
    const redis =
      server === client ? connection.describe() : `${(server as Redis).options.host}:${(server as Redis).options.port}`;
    if (!read) {
      logger.debug("redis memory policy unreadable (CONFIG and INFO refused): not checked", { redis });
      continue;
    }
    const { policy, maxmemory } = read;
    if (policy !== "noeviction")
      logger.warn(
        `redis maxmemory-policy ${policy} can evict herdless's coordination keys (key leases, origin-cap permits, purge lists) when Redis is full: two members then fetch one key and the origin cap overflows. Set maxmemory-policy noeviction; herdless evicts its own entries past cache.sharedMaxBytes`,
        { redis, policy, maxmemory, sharedMaxBytes },
      );
    if (maxmemory > 0 && maxmemory < sharedMaxBytes)
      logger.warn(
        "redis maxmemory is below cache.sharedMaxBytes: Redis fills before herdless evicts its entries, and then refuses (noeviction) or evicts (other policies) the fleet's leases. Lower cache.sharedMaxBytes or raise maxmemory (docs/node.md, Redis memory)",
        { redis, maxmemory, sharedMaxBytes },
      );
  }
}

/** {@link warnOnMemoryPolicy} once Redis first answers (now, if it does). */
export async function checkMemoryPolicyOnce(
  connection: RedisConnection,
  logger: Logger,
  sharedMaxBytes: number,
): Promise<void> {
  const check = () => warnOnMemoryPolicy(connection, logger, sharedMaxBytes).catch(() => undefined);
  if (connection.healthy) return check();
  const stop = connection.onHealthChange((healthy) => {
    if (!healthy) return;
    stop();
    void check();
  });
}
