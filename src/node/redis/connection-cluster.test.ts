import type { Cluster } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { startCluster, type HaRedis } from "../../../test/node/redis-ha.ts";
import { RedisConnection } from "./connection.ts";

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
});
