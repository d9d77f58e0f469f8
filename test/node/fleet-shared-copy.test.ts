/**
 * Requests the near tier answers alone (they never ask a fill of the coordinator) in a fleet:
 * `only-if-cached`, and a visitor's cookie request given a public copy. The fleet's copy is
 * the shared tier's, so a member whose memory lacks it answers them from Redis.
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeDeployed, deployBehind, send } from "./deployment.ts";

afterEach(closeDeployed);

function counting(cacheControl: string) {
  const seen = { n: 0 };
  const handler = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => {
    req.resume();
    res.writeHead(200, { "cache-control": cacheControl, "content-type": "text/plain" }).end(`#${++seen.n}`);
  };
  return { seen, handler };
}

describe("a fleet member without the page in memory", () => {
  it("answers only-if-cached with the copy another member stored, not a 504", async () => {
    const origin = counting("max-age=600");
    const d = await deployBehind("fleet", origin.handler, {}, 2);
    const [a, b] = d.urls as [string, string];
    expect((await send(a, "/doc")).body).toBe("#1");
    // Before: b looked in its own memory only and answered 504, though the fleet held #1.
    const got = await send(b, "/doc", { headers: { "cache-control": "only-if-cached" } });
    expect(got.status).toBe(200);
    expect(got.body).toBe("#1");
    expect(origin.seen.n).toBe(1);
  });

  it("gives a cookie request the public copy another member stored, without asking the origin", async () => {
    const origin = counting("public, max-age=600");
    const d = await deployBehind("fleet", origin.handler, {}, 2);
    const [a, b] = d.urls as [string, string];
    expect((await send(a, "/style.css")).body).toBe("#1");
    // Before: b, with nothing in memory, relayed the signed-in visitor's request to the origin.
    const got = await send(b, "/style.css", { headers: { cookie: "session=v1" } });
    expect(got.body).toBe("#1");
    expect(got.cacheStatus).toContain("hit");
    expect(origin.seen.n).toBe(1);
  });

  it("still relays a cookie request when the shared copy is not public", async () => {
    const origin = counting("max-age=600");
    const d = await deployBehind("fleet", origin.handler, {}, 2);
    const [a, b] = d.urls as [string, string];
    expect((await send(a, "/account")).body).toBe("#1");
    const got = await send(b, "/account", { headers: { cookie: "session=v1" } });
    expect(got.body).toBe("#2");
    expect(got.cacheStatus).toContain("fwd=bypass");
  });
});
