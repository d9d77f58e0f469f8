import { describe, expect, it } from "vitest";
import { ManualClock } from "../../core/clock.ts";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import { FleetEpoch } from "./guard-epoch.ts";
import { PermitRenewals } from "./guard-renewal.ts";

const redis = redisTestConnection();

describe("PermitRenewals", () => {
  it("a permit released while its renewal is on its way is not written back (a renewal Redis refused for its script, NOSCRIPT, is not sent again behind the release)", async () => {
    const { connection } = redis;
    const prefix = redis.prefix();
    const keys = { permits: `${prefix}{guard}:permits`, epoch: `${prefix}{guard}:epoch` };
    const clock = new ManualClock(Date.now());
    let tick: (() => void) | undefined;
    const heard: unknown[] = [];
    const renewals = new PermitRenewals({
      ...{ connection, keys, epoch: new FleetEpoch(2_000), ttlMs: 15_000, maxConcurrency: 4, clock },
      timers: { setTimeout: (fn) => (tick = fn), clearTimeout: () => undefined },
      inRedis: () => true,
      onError: (cause) => void heard.push(cause),
    });
    await connection.client.zadd(keys.permits, clock.now() + 15_000, "held", clock.now() + 15_000, "released");
    renewals.hold("held");
    renewals.hold("released");
    // A Redis whose script cache was emptied under the connection (SCRIPT FLUSH): the renewal
    // goes as EVALSHA and is refused. Sent again, as it was, it ran behind the release below.
    await connection.client.script("FLUSH");
    const renew = tick!;
    tick = undefined;
    renew();
    // The holder of "released" ends its call now, as RedisGuard's release does: off the
    // renewals, then its ZREM (the guard's release script), sent while the renewal is on its way.
    renewals.drop("released");
    await connection.client.zrem(keys.permits, "released");
    // The renewal has ended once it schedules the next one.
    while (tick === undefined) await connection.client.ping();
    const held = await connection.client.zrange(keys.permits, "0", "-1");
    // Before, "released" was written back: its slot stayed taken until its lease ran out (15 s).
    expect(held).toEqual(["held"]);
    // The refusal is a failed renewal: the guard counts its permits on its local share until it rejoins.
    expect(String(heard)).toMatch(/NOSCRIPT/);
    renewals.drop("held");
  });
});
