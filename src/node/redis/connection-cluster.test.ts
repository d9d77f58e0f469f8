import type { Cluster } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { redisCli, startCluster, type HaRedis } from "../../../test/node/redis-ha.ts";
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

  it("replies every master sent in time are read after the event loop was busy 1.5 s (timeout 1 s): all commands succeed, the connection stays up", async () => {
    const keys = Array.from({ length: 40 }, (_, n) => `key-${n}`);
    const pending = Promise.allSettled(keys.map((key) => connection!.run("get", (client) => client.get(key))));
    const until = performance.now() + 1_500;
    while (performance.now() < until);
    // Before: all 40 rejected "Command timed out" and the connection was dropped.
    expect((await pending).filter((result) => result.status === "rejected")).toEqual([]);
    expect(connection!.healthy).toBe(true);
  });

  it("a master slow to answer as the connection starts: the connection is ready only once it answers, and no command is refused", async () => {
    // The third master stalls (CLIENT PAUSE) while the connection starts from the other two:
    // the Cluster reads its slot map and passes its ready check through them, while the
    // third master's node is still in its own ready check.
    const ports = cluster!.url.split(",").map((url) => Number(new URL(url).port));
    await redisCli(ports[2]!, "client", "pause", "800", "ALL");
    const late = new RedisConnection({
      url: ports
        .slice(0, 2)
        .map((port) => `redis://127.0.0.1:${port}`)
        .join(","),
    });
    try {
      await late.ready();
      const keys = Array.from({ length: 40 }, (_, n) => `late-${n}`);
      const leases = new RedisLeaseManager({ connection: late, prefix: "late:" });
      const results = await Promise.allSettled([
        ...keys.map((key) => late.run("get", (client) => client.get(key))),
        ...keys.map((key) => leases.acquire(key, 10_000)),
      ]);
      // Before, the third master's share failed "Connection is closed" (the connection was
      // healthy as soon as the Cluster was ready): 1 run in 8 of the first test, every run here.
      expect(results.filter((result) => result.status === "rejected").map((result) => String(result.reason))).toEqual(
        [],
      );
      expect(results.slice(40).every((result) => result.status === "fulfilled" && result.value)).toBe(true);
    } finally {
      await late.close();
    }
  }, 60_000);
});
