import { createHash } from "node:crypto";
import type { Config } from "../../core/config.ts";
import type { Logger } from "../logger.ts";
import type { RedisConnection } from "./connection.ts";
import type { FleetMembers } from "./members.ts";

/** How long the record of a fleet's digests outlives its last write. */
const RECORD_TTL_MS = 24 * 3600_000;

/**
 * A digest of the settings every member of a fleet must share (docs/node.md, "A fleet with
 * Redis"): the origin, the routes and their defaults, what is stored and how it is coordinated.
 * Left out: what may differ per machine (`cache.maxBytes`, `cache.fillBudgetBytes`, `server`),
 * the admin token and the logs.
 */
export function fleetConfigDigest(config: Config): string {
  const { admin: _admin, log: _log, server: _server, cache, ...shared } = config;
  const { maxBytes: _maxBytes, fillBudgetBytes: _budget, ...sharedCache } = cache;
  const text = JSON.stringify({ ...shared, cache: sharedCache });
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

/**
 * Records this member's digest in Redis (`…fleet:configs`, member id → digest) and warns when
 * a live member runs another config. Members of one cache name share every entry, lease and
 * the cap: one whose `origin.url` differs serves the other origin's pages under the same keys,
 * one with another `origin.maxConcurrency` keeps another cap. Nothing told the operator, who
 * had started it with the same `cache.name` (a second deployment, a config changed on some
 * machines only). A warning, not a refusal: a rolling change of the config runs both for a
 * while. Never fails: a Redis that does not answer only skips the check.
 */
export async function checkFleetConfig(o: {
  connection: RedisConnection;
  prefix: string;
  members: Pick<FleetMembers, "id" | "live">;
  config: Config;
  logger: Logger;
}): Promise<void> {
  const key = `${o.prefix}fleet:configs`;
  const digest = fleetConfigDigest(o.config);
  try {
    const live = new Set(await o.members.live());
    const all = await o.connection.run("fleet configs", async (client) => {
      await client.hset(key, o.members.id, digest);
      await client.pexpire(key, RECORD_TTL_MS);
      return client.hgetall(key);
    });
    const gone = Object.keys(all).filter((id) => !live.has(id) && id !== o.members.id);
    if (gone.length > 0) await o.connection.run("fleet configs", (client) => client.hdel(key, ...gone));
    const others = [...live].filter((id) => id !== o.members.id && all[id] !== undefined && all[id] !== digest);
    if (others.length > 0)
      o.logger.warn(
        "fleet members run another config: run the same one on every process (two deployments need two cache.name)",
        {
          members: others,
        },
      );
  } catch {
    // Redis away at start: the fleet works as before, unchecked.
  }
}
