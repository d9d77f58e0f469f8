/**
 * An origin that closes a kept-alive connection as the Worker writes the next request on it
 * (a Node origin's 5 s keepAliveTimeout racing workerd's connection pool): the request is
 * lost before any answer. Each connection of this origin answers its first request and
 * resets every later one (vitest.workers.setup.ts, `staleOrigin`). A cap of one and a breaker
 * that opens on the first failure show a request wrongly failed or counted.
 */
import { afterEach, describe, expect, inject, it, vi } from "vitest";
import { dataCenters, edgeEnv } from "./edge-harness.ts";

const stale = inject("herdlessStaleOrigin");
const strict = {
  origin: { maxConcurrency: 1, timeoutMs: 2_000 },
  breaker: { failureThreshold: 1, backoffBaseMs: 0 },
};

/**
 * A second of quiet on the Worker's clock (Date only: timers run as they do): the origin's
 * connections have been idle long enough for it to close them.
 */
function quiet(): void {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(Date.now() + 1_500);
}

afterEach(() => {
  vi.useRealTimers();
});

/** What the origin saw since it was last asked, oldest first (a reset request is marked). */
async function seen(): Promise<string[]> {
  return (await (await fetch(`${stale}/__seen`)).json()) as string[];
}

describe("a kept-alive origin connection closed under a request (Worker)", () => {
  it("a GET or HEAD lost on a pooled connection is asked again on a new one: the visitor gets the page, the breaker stays closed", async () => {
    // Each test starts with the origin's log cleared and none of its connections in workerd's pool.
    await seen();
    const [dc] = dataCenters(1, edgeEnv(stale, strict));
    const first = await dc!.get("/a");
    await first.settled;
    expect([first.status, first.body]).toEqual([200, "/a"]);
    quiet();
    const second = await dc!.get("/b");
    await second.settled;
    expect([second.status, second.body]).toEqual([200, "/b"]);
    // A failure counted against a breaker that opens on the first would refuse this cold page.
    quiet();
    const head = await dc!.get("/c", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await seen()).toEqual(["GET /a", "GET /b (reset)", "GET /b", "GET /c (reset)", "GET /c"]);
  });

  it("a POST is never asked twice: the origin may have acted on it before the reset", async () => {
    const [dc] = dataCenters(1, edgeEnv(stale, { breaker: { failureThreshold: 1_000 } }));
    await seen();
    const warm = await dc!.get("/warm");
    await warm.settled;
    quiet();
    const post = await dc!.get("/order", { method: "POST", body: "{}" });
    expect(post.status).toBe(502);
    expect(await seen()).toEqual(["GET /warm", "POST /order (reset)"]);
  });

  it("an origin found resetting every connection after a quiet second is asked once more, then once per request", async () => {
    const [dc] = dataCenters(1, edgeEnv(stale, { breaker: { failureThreshold: 1_000, backoffBaseMs: 0 } }));
    await seen();
    const up = await dc!.get("/up");
    await up.settled;
    quiet();
    expect((await dc!.get("/down/1")).status).toBe(502);
    expect((await dc!.get("/down/2")).status).toBe(502);
    // /down/1 on the connection /up left, then once more on a new one; /down/2 once.
    expect(await seen()).toEqual(["GET /up", "GET /down/1 (reset)", "GET /down/1 (reset)", "GET /down/2 (reset)"]);
  });

  it("an origin that fails right after it answered is failing: the lost request is not asked again", async () => {
    const [dc] = dataCenters(1, edgeEnv(stale, { breaker: { failureThreshold: 1_000, backoffBaseMs: 0 } }));
    await seen();
    const up = await dc!.get("/alive");
    await up.settled;
    expect((await dc!.get("/soon")).status).toBe(502);
    expect(await seen()).toEqual(["GET /alive", "GET /soon (reset)"]);
  });
});
