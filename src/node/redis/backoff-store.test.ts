import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../../core/clock.ts";
import { backoffStoreConformance } from "../../core/guard/backoff-store-conformance.ts";
import { startRedisServer, type RedisServer } from "../../../test/node/redis-server.ts";
import { RedisBackoffStore } from "./backoff-store.ts";
import { RedisConnection } from "./connection.ts";
import { RedisLeaseManager } from "./lease.ts";

const T0 = 1_700_000_000_000;
let server: RedisServer;
let connection: RedisConnection;
let prefixes = 0;
const uniquePrefix = () => `test:${process.pid}:backoff${++prefixes}:`;

beforeAll(async () => {
  server = await startRedisServer();
  connection = new RedisConnection({ url: server.url });
  await connection.ready();
});

afterAll(async () => {
  await connection?.close();
  await server?.stop();
});

backoffStoreConformance("redis", async () => {
  const clock = new ManualClock(T0);
  return { clock, store: new RedisBackoffStore({ connection, clock, prefix: uniquePrefix() }) };
});

describe("RedisBackoffStore", () => {
  it("keeps the record in Redis until its forgetAt, in the slot of the key's lease", async () => {
    const clock = new ManualClock(T0);
    const prefix = uniquePrefix();
    const store = new RedisBackoffStore({ connection, clock, prefix });
    await store.set("GET https://site.test/a", { v: 1, failures: 2, until: T0 + 2_000, forgetAt: T0 + 62_000 });
    const pttl = await connection.client.pttl(store.redisKey("GET https://site.test/a"));
    expect(pttl).toBeGreaterThan(61_000);
    expect(pttl).toBeLessThanOrEqual(62_000);
    const lease = new RedisLeaseManager({ connection, clock, prefix }).leaseKey("GET https://site.test/a");
    const slot = (key: string) => key.slice(key.indexOf("{"));
    expect(slot(store.redisKey("GET https://site.test/a"))).toBe(slot(lease));
  });

  it("a damaged or foreign record is no backoff: the key is asked again", async () => {
    const clock = new ManualClock(T0);
    const store = new RedisBackoffStore({ connection, clock, prefix: uniquePrefix() });
    for (const junk of ["not json", "null", JSON.stringify({ v: 99, failures: 1, until: T0 + 1, forgetAt: T0 + 9 })]) {
      await connection.client.set(store.redisKey("k"), junk);
      expect(await store.get("k")).toBeUndefined();
    }
  });
});
