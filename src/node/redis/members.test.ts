import { describe, expect, it } from "vitest";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import { FleetMembers } from "./members.ts";

const redis = redisTestConnection();

describe("FleetMembers: a process that leaves is not listed again", () => {
  it("a heartbeat Redis refused for its script (NOSCRIPT: a restarted or fresh Redis) is not sent again behind the leave", async () => {
    const prefix = redis.prefix();
    const members = new FleetMembers({ connection: redis.connection, prefix });
    await members.start();
    // As after a restart: the heartbeat's script is unknown, ZREM (the leave) is a plain command.
    await redis.connection.client.script("FLUSH");
    const beat = members.beat();
    const left = members.stop();
    await Promise.all([beat, left]);
    // Listed again, it would stand in the fleet's member list for MEMBER_TTL_MS (3 s): one
    // member too many in every share, and purges waiting on a process that is gone.
    expect(await redis.connection.client.zscore(`${prefix}fleet:members`, members.id)).toBeNull();
  });
});
