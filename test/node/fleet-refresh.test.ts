/**
 * A background refresh (stale-while-revalidate) whose answer may no longer be shared deletes
 * the shared copy in Redis; a fleet member's own LRU kept serving the old one, each answer
 * starting one more origin request, until the stale window ended (RFC 9111 §4.3.4).
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeDeployed, deployBehind, send } from "./deployment.ts";

afterEach(closeDeployed);
const tick = (ms = 100) => new Promise((r) => setTimeout(r, ms));

describe("a fleet member's near tier after a background refresh the origin answers unshareable", () => {
  it.each([["304 no-store"], ["200 private"]])("%s: the old shared copy stops answering", async (kind) => {
    let changed = false;
    let requests = 0;
    const d = await deployBehind(
      "fleet",
      (req, res) => {
        requests++;
        if (!changed) {
          const headers = {
            "cache-control": "max-age=1, stale-while-revalidate=60",
            etag: '"v1"',
            "content-type": "text/plain",
          };
          return void res.writeHead(200, headers).end("shared-v1");
        }
        if (kind === "304 no-store" && req.headers["if-none-match"] === '"v1"')
          return void res.writeHead(304, { "cache-control": "no-store", etag: '"v1"' }).end();
        res.writeHead(200, { "cache-control": "private, max-age=60", "content-type": "text/plain" }).end("personal");
      },
      {},
      1,
    );
    const url = d.urls[0]!;
    expect((await send(url, "/p")).body).toBe("shared-v1");
    d.clock.advance(2_000);
    changed = true;
    expect((await send(url, "/p")).body).toBe("shared-v1"); // stale-while-revalidate: fine, refresh behind it
    await tick(200);
    const later: string[] = [];
    for (let i = 0; i < 4; i++) {
      const a = await send(url, "/p");
      later.push(`${a.cacheStatus} ${a.body}`);
      await tick(100);
    }
    // Before: every one "hit; detail=stale-while-revalidate shared-v1", and one origin request each.
    expect(later.filter((s) => s.endsWith("shared-v1"))).toEqual([]);
    expect(requests).toBeLessThanOrEqual(6);
  });
});
