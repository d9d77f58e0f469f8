import { describe, expect, it } from "vitest";
import { ManualClock } from "../../core/clock.ts";
import { backoffStoreConformance } from "../../core/guard/backoff-store-conformance.ts";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import { RedisBackoffStore } from "./backoff-store.ts";
import { RedisLeaseManager } from "./lease.ts";

const T0 = 1_700_000_000_000;
const redis = redisTestConnection();

backoffStoreConformance("redis", async () => {
  const clock = new ManualClock(T0);
  return { clock, store: new RedisBackoffStore({ connection: redis.connection, clock, prefix: redis.prefix() }) };
});

describe("RedisBackoffStore", () => {
  it("keeps the record in Redis until its forgetAt, in the slot of the key's lease", async () => {
    const clock = new ManualClock(T0);
    const prefix = redis.prefix();
    const store = new RedisBackoffStore({ connection: redis.connection, clock, prefix });
    await store.set("GET https://site.test/a", { v: 1, failures: 2, until: T0 + 2_000, forgetAt: T0 + 62_000 });
    const pttl = await redis.connection.client.pttl(store.redisKey("GET https://site.test/a"));
    expect(pttl).toBeGreaterThan(61_000);
    expect(pttl).toBeLessThanOrEqual(62_000);
    const lease = new RedisLeaseManager({ connection: redis.connection, clock, prefix }).leaseKey(
      "GET https://site.test/a",
    );
    const slot = (key: string) => key.slice(key.indexOf("{"));
    expect(slot(store.redisKey("GET https://site.test/a"))).toBe(slot(lease));
  });

  it("a damaged or foreign record is no backoff: the key is asked again", async () => {
    const clock = new ManualClock(T0);
    const store = new RedisBackoffStore({ connection: redis.connection, clock, prefix: redis.prefix() });
    for (const junk of ["not json", "null", JSON.stringify({ v: 99, failures: 1, until: T0 + 1, forgetAt: T0 + 9 })]) {
      await redis.connection.client.set(store.redisKey("k"), junk);
      expect(await store.get("k")).toBeUndefined();
    }
  });
});
