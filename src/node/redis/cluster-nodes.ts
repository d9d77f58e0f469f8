import type { Cluster, Redis } from "ioredis";
import { timeCommands } from "./command-timeout.ts";
import { loadScripts } from "./lua-script.ts";

export interface ClusterNodesOptions {
  /** Load every Lua script into each node as its connection becomes ready. */
  loadsScripts: boolean;
  /** Each node's own commands (the script loads) are timed like the Cluster's (command-timeout.ts). */
  commandTimeoutMs: number;
  /** Called (maybe more than once) when the Cluster is ready and so is each master's connection. */
  onReady: () => void;
}

/**
 * Prepares each node connection of `client` before a command needs it, and says when all are.
 *
 * A Cluster connects to each node on its first command, and refuses a second command sent to
 * a node still connecting ("Connection is closed"): so each node is connected as soon as the
 * slot map names it. Each node loads every script as it becomes ready, ahead of anything else
 * it carries (lua-script.ts). And the Cluster is ready once it has read the slot map and one
 * node said the cluster is up, while other masters' connections may still be in their ready
 * check: commands sent at once then were refused (1 run in 8 of connection-cluster.test.ts
 * on a loaded machine), so `onReady` waits for every master's connection and its loads too.
 */
export function prepareClusterNodes(client: Cluster, o: ClusterNodesOptions): void {
  const prepared = new WeakSet<Redis>();
  const check = () => {
    if (client.status === "ready" && client.nodes("master").every((node) => prepared.has(node))) o.onReady();
  };
  client.on("+node", (node: Redis) => {
    timeCommands(node, o.commandTimeoutMs);
    node.on("ready", () => {
      const loads = o.loadsScripts ? loadScripts(node, client) : Promise.resolve();
      void loads.then(() => {
        if (node.status === "ready") prepared.add(node);
        check();
      });
    });
    if (node.status === "wait") node.connect().catch(() => undefined);
  });
  // A master that went away (its connection ended) is no longer waited for.
  client.on("-node", check);
  client.on("ready", check);
}
