/**
 * herdless's promises (promises.test.ts) judged on the same seeded traffic against a fleet:
 * three members sharing one redis-server, each request dealt to one of them at random, one
 * origin (promises-fleet.ts). The cap (`origin.maxConcurrency`) and one fill per key are
 * fleet-wide. A seed may add a fault of the fleet's own during a burst: Redis restarted
 * empty, `FLUSHALL`, Redis paused for 300 ms, one member shut down. While the fleet is cut off
 * from Redis (and as it comes back) each member fills on its own by design (docs/node.md, "When
 * Redis goes away"): the collapse and stale promises are not judged then, the cap, the
 * answers (none made for another client, no 500 of herdless's own) and every client being
 * answered always are. Those windows are read from the members themselves (each logs the moment
 * it is cut off and back), so a Redis paused past the command timeout on a loaded machine is
 * judged as the restart is. A Redis that lost its data counts as a hard purge of everything.
 *
 * Seed 21 restarts Redis in its fourth burst; its origin is down in the third, which meets the
 * stand-in copy the run stored just before (promises-run.ts): a stale answer in every run.
 *
 * The seeds here pass; others are explored by hand with the same kit (runSeed, fleetOf).
 */
import { describe, expect, it } from "vitest";
import { unexercised, violations } from "./promises-checks.ts";
import { fleetOf, type FleetFault } from "./promises-fleet.ts";
import { runSeed } from "./promises-run.ts";

describe("herdless's promises under seeded random traffic (Node, a fleet of three on Redis)", () => {
  it.each<[number, FleetFault]>([[21, "restart"]])(
    "seed %i, Redis %s mid-burst: every promise kept",
    async (seed, fault) => {
      const run = await runSeed(seed, { waves: 4 }, fleetOf(seed, fault));
      const problems = [...violations(run), ...unexercised(run, ["cap", "stand-in", "degraded"])];
      expect(problems, `seed ${seed}, cap ${run.cap}:\n${[...run.story, ...run.looks].join("\n")}\n`).toEqual([]);
    },
    60_000,
  );
});
