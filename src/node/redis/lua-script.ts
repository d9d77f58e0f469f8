import { createHash } from "node:crypto";
import type { Cluster, Redis } from "ioredis";

/*
 * Redis's script cache is emptied by a restart, and a replica promoted by a failover never
 * had this fleet's scripts. A script Redis does not know (NOSCRIPT) used to be sent again
 * whole, and the second send landed behind every command sent meanwhile: a lease's release
 * then ran before the write-back of that lease, which took the released key back for nobody
 * (the same for a heartbeat behind a leave, a permit renewal behind a release). So:
 *
 * - every connection loads every script (SCRIPT LOAD) as it connects, before it carries
 *   anything else: Redis runs one connection's commands in the order they were sent, so each
 *   EVALSHA after a (re)connect finds its script. Restarts and failovers always drop the
 *   connection, so they always pass here. FLUSHALL leaves the script cache alone.
 * - a script refused anyway (NOSCRIPT: SCRIPT FLUSH on a live connection, or a proxy whose
 *   server restarted behind it) is never sent again: the call fails like any failed command,
 *   which every caller handles (the script did not run), and the connection loads every script
 *   again, so the calls sent after that load find them.
 * - a Redis that refuses SCRIPT LOAD itself (an ACL, a renamed command) has its scripts sent
 *   whole (EVAL): one command, never refused for its script.
 */

/** connection.ts's RedisClient, written out: connection.ts loads the scripts through this module. */
type RedisClient = Redis | Cluster;

/** Every script of the process, by SHA: loaded into each Redis its connections reach. */
const everyScript = new Map<string, string>();
/** Clients whose Redis refused SCRIPT LOAD: their scripts go whole. */
const sentWhole = new WeakSet<RedisClient>();
/** Clients loading their scripts again after a NOSCRIPT, until the loads have answered. */
const reloading = new WeakSet<RedisClient>();

/**
 * Sends SCRIPT LOAD for every script to `node` (one server of `client`), at once and ahead of
 * whatever is sent after this call. Resolves once Redis answered all of them; a refusal (a
 * reply error, not a dropped connection) has `client` send its scripts whole.
 */
export async function loadScripts(node: Redis, client: RedisClient): Promise<void> {
  const loads = await Promise.allSettled([...everyScript.values()].map((lua) => node.script("LOAD", lua)));
  const refused = loads.some((load) => load.status === "rejected" && isReplyError(load.reason));
  if (refused) sentWhole.add(client);
  else if (loads.every((load) => load.status === "fulfilled")) sentWhole.delete(client);
}

/** Loads every script again into each server of `client`, once per burst of refusals. */
function reload(client: RedisClient): void {
  if (reloading.has(client)) return;
  reloading.add(client);
  const nodes = client.isCluster ? (client as Cluster).nodes("all") : [client as Redis];
  void Promise.all(nodes.map((node) => loadScripts(node, client))).finally(() => reloading.delete(client));
}

function isReplyError(error: unknown): boolean {
  return error instanceof Error && error.name === "ReplyError";
}

/**
 * A Lua script run by SHA: one round trip, and the script's text crosses the network once per
 * connection (see above). A script Redis does not know is not sent again: `run` rejects.
 */
export class LuaScript {
  private readonly sha: string;
  constructor(private readonly lua: string) {
    this.sha = createHash("sha1").update(lua).digest("hex");
    everyScript.set(this.sha, lua);
  }

  async run(client: RedisClient, keys: string[], args: (string | number | Buffer)[]): Promise<unknown> {
    if (sentWhole.has(client)) return this.runText(client, keys, args);
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      // Sent again now, it would run behind every command sent since: it fails instead.
      if (error instanceof Error && error.message.startsWith("NOSCRIPT")) reload(client);
      throw error;
    }
  }

  /** The script sent whole (EVAL): one command whatever Redis's script cache holds. */
  runText(client: RedisClient, keys: string[], args: (string | number | Buffer)[]): Promise<unknown> {
    return client.eval(this.lua, keys.length, ...keys, ...args);
  }
}
