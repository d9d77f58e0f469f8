/**
 * RFC 9111 §4.4 in a fleet: a successful POST through one member invalidates the page for every
 * member, whichever copy of it the shared tier holds when the write lands.
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeDeployed, deployBehind, send } from "./deployment.ts";

afterEach(closeDeployed);
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("a fleet invalidating a page on a POST", () => {
  it("marks the shared tier's newer copy (another member's reload), asked for before the POST, not only the copy the writer held", async () => {
    let served = 0;
    const d = await deployBehind(
      "fleet",
      (req, res) => {
        req.resume();
        if (req.method === "POST") return void res.writeHead(200, { "content-type": "text/plain" }).end("saved");
        res.writeHead(200, { "cache-control": "max-age=600", "content-type": "text/plain" }).end(`#${++served}`);
      },
      { defaults: { honorRequestNoCache: true } },
      2,
    );
    const [writer, other] = d.urls as [string, string];
    expect((await send(writer, "/doc")).body).toBe("#1");
    // The other member stores a newer copy (a reload); the writer's memory still holds the first.
    const newer = await send(other, "/doc", { headers: { "cache-control": "no-cache" } });
    expect(newer.body).toBe("#2");
    await tick(100);
    expect((await send(writer, "/doc", { method: "POST", body: "edit" })).body).toBe("saved");
    await tick(100);
    // Before: the writer's mark, made from its copy #1, was refused by #2's newer token, and
    // both members answered #2, asked of the origin before the POST, as a fresh hit.
    const after = await send(writer, "/doc");
    expect(after.body).not.toBe("#2");
    expect(after.cacheStatus).toContain("fwd=");
    await tick(100);
    expect((await send(other, "/doc")).body).not.toBe("#2");
  });
});
