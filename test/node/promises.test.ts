/**
 * herdless's promises (/docs/architecture.md, DESIGN.md) judged on seeded random traffic
 * against one Node process on the real clock: bursts of 200 to 500 requests of every kind
 * (GET, HEAD, POST, PUT, DELETE, OPTIONS, WebSocket handshakes, conditional and Range requests,
 * Cookie and Authorization, a client's `no-cache` and `max-age=0`, uploads slow and fast,
 * clients that hang up) over a few hot keys and many cold ones, with purges, an origin that
 * answers every way an origin does (promises-origin.ts) and, in some seeds, goes down for a
 * burst. After each run (promises-checks.ts):
 *
 * - the origin never works on more than `origin.maxConcurrency` requests at once;
 * - one origin request at a time per cached key, none again within the copy's lifetime;
 * - no client gets an answer made for another (its Set-Cookie, a page naming it);
 * - no `500` of herdless's own, no client left unanswered;
 * - a copy within stale-while-revalidate answers while its slow refresh runs, and one within
 *   stale-if-error hides every failure of the origin (a copy the run stores before its traffic
 *   meets the outage, so each seed with one surely serves a stale copy: `fwd=stale`).
 *
 * The seeds here pass; others are explored by hand with the same kit (runSeed, violations).
 */
import { describe, expect, it } from "vitest";
import { unexercised, violations } from "./promises-checks.ts";
import { runSeed } from "./promises-run.ts";

describe("herdless's promises under seeded random traffic (Node, one process)", () => {
  it.each([3, 21])(
    "seed %i: every promise kept",
    async (seed) => {
      const run = await runSeed(seed, { waves: 4 });
      // The run exercised what it judges: the origin was kept busy to its cap, and the outage
      // (both seeds have one) met the stand-in copy the run stored before its traffic.
      expect([...violations(run), ...unexercised(run, ["cap", "stand-in"])], `seed ${seed}, cap ${run.cap}`).toEqual(
        [],
      );
    },
    60_000,
  );
});
