/**
 * Promise 1 while a fleet shuts down: a request whose client left while it waited on another
 * member's fill makes no origin request of its own when its member closes. The member's server
 * drains its clients, then lets go of Redis; the request, still waiting for nobody, lost its
 * wait with the connection and fell back to a fill of its own: a second origin request for a
 * page the fleet was filling (the seeded fleet check saw `/slow/144` asked twice, 5 ms apart,
 * as its run closed the fleet).
 */
import { afterEach, describe, expect, it } from "vitest";
import { request } from "node:http";
import { closeDeployed, deployBehind, send } from "./deployment.ts";

afterEach(closeDeployed);
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A GET whose client hangs up after `afterMs`, answered or not. */
function leaveAfter(base: string, path: string, afterMs: number): void {
  const req = request(`${base}${path}`, { headers: { host: "site.test" } });
  req.on("error", () => undefined);
  req.end();
  setTimeout(() => req.destroy(), afterMs);
}

describe("a fleet shutting down", () => {
  it("makes no origin request for a waiter whose client left: the fill under way is the page's one", async () => {
    const asked: string[] = [];
    const d = await deployBehind(
      "fleet",
      (req, res) => {
        asked.push(req.url ?? "");
        setTimeout(() => res.writeHead(200, { "cache-control": "max-age=60" }).end("page"), 400);
      },
      {},
      2,
    );
    const [a, b] = d.urls as [string, string];
    // Member a fills the page; member b's request waits on that fill, and its client leaves.
    const filling = send(a, "/p").catch(() => undefined);
    await tick(50);
    leaveAfter(b, "/p", 50);
    await tick(100);
    // Member b, with no client left, closes at once; member a drains its client first.
    await d.close();
    await filling;
    await tick(200);
    // Before: ["/p", "/p"], member b's request filling the page again as it closed.
    expect(asked).toEqual(["/p"]);
  });
});
