/**
 * A HEAD the Worker relays to an origin that sends `103 Early Hints` first. workerd's fetch
 * hands a HEAD's 103 over as the final answer, without a body (a HEAD's answer has none), and
 * leaves the real answer's head on the pooled connection, where the next request to the
 * origin, anyone's, read it as its own answer.
 */
import { describe, expect, it } from "vitest";
import { dataCenters, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

describe("a relayed HEAD behind a 103 Early Hints on the Worker", () => {
  it("attack: the victim's HEAD answer never becomes the next visitor's answer", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    await origin.set({
      paths: { "/account": { earlyHints: true, headers: { "set-cookie": "sid=victim-rotated", "x-page": "account" } } },
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url));
    // The victim's HEAD, relayed (its Cookie), answered 103 then 200 with a new session cookie.
    const victim = await dc!.get("/account", { method: "HEAD", headers: { cookie: "sid=victim" } });
    // The next request to the origin, another visitor's, for another page.
    const next = await dc!.get("/news", { headers: { cookie: "sid=attacker" } });
    expect([next.status, next.headers.get("set-cookie"), next.headers.get("x-page")]).toEqual([200, null, null]);
    expect(next.body).toMatch(/^\/news #\d+$/); // the namespace's count: the victim's was #1
    // Before, the victim got a 502 (the 103 taken as final) and its answer went to the next request.
    expect([victim.status, victim.headers.get("set-cookie")]).toEqual([200, "sid=victim-rotated"]);
  });
});
