import type { Cluster } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { startCluster, type HaRedis } from "../../../test/node/redis-ha.ts";
import { RedisConnection } from "./connection.ts";
import { RedisLeaseManager } from "./lease.ts";

describe("RedisConnection on a Redis Cluster", () => {
  let cluster: HaRedis | undefined;
  let connection: RedisConnection | undefined;
  afterAll(async () => {
    await connection?.close();
    await cluster?.stop();
  });

  it("commands sent at once just after it is ready all run: no node refuses them while still connecting", async () => {
    cluster = await startCluster();
    connection = new RedisConnection({ url: cluster.url });
    await connection.ready();
    // Keys over every slot range: a fleet member's first requests after start-up, all at once.
    const keys = Array.from({ length: 40 }, (_, n) => `key-${n}`);
    const results = await Promise.allSettled(keys.map((key) => connection!.run("get", (client) => client.get(key))));
    // Before, 27 of 40 failed "Connection is closed": the nodes were connected on first use,
    // and ioredis refuses a second command to a node still connecting.
    expect(results.filter((result) => result.status === "rejected")).toEqual([]);
    expect((connection.client as Cluster).nodes("master").map((node) => node.status)).toEqual([
      "ready",
      "ready",
      "ready",
    ]);
  }, 60_000);

  it("every node has the scripts before the first command that runs one: none is refused (NOSCRIPT), none sent whole", async () => {
    // The connection above: each node loaded the scripts as it became ready (lua-script.ts).
    const leases = new RedisLeaseManager({ connection: connection!, prefix: "scripts:" });
    const keys = Array.from({ length: 40 }, (_, n) => `key-${n}`);
    expect((await Promise.all(keys.map((key) => leases.acquire(key, 10_000)))).every(Boolean)).toBe(true);
    for (const node of (connection!.client as Cluster).nodes("all")) {
      expect(await node.info("errorstats")).not.toMatch(/NOSCRIPT/);
      expect(await node.info("commandstats")).not.toMatch(/cmdstat_eval:/);
    }
  });
});
