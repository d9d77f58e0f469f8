/**
 * Requests held waiting for an origin answer are bounded per process (`origin.maxWaiting`).
 * Each one costs heap (~13 KB: socket, parser, request, the awaits it sits in), and the
 * requests collapsed onto one fill were not capped: a few thousand clients asking for one
 * slow cold page filled the bounded heap of `npx herdless` (2,600 at a 16 MiB cache) and the
 * process exited, every visitor's connection with it. Past the bound a request is answered at
 * once and never held: its stored copy if it has one, else a 503 with Retry-After and
 * `detail=waiting-full`. The bound is small here so the attack is quick.
 */
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, servingOrigin, type RawAnswer } from "./attack-kit.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const BOUND = 5;

/** `/cold…` is held until `release()`; any other path answers at once; `/news` is fresh for a second, the rest for ten minutes. */
async function slowColdOrigin() {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const seen: string[] = [];
  const url = await servingOrigin((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    const answer = () =>
      res
        .writeHead(200, {
          "cache-control": req.url === "/news" ? "max-age=1" : "max-age=600",
          "content-type": "text/plain",
        })
        .end(`page ${req.url} #${seen.length}`);
    if (req.url?.startsWith("/cold")) void released.then(answer);
    else answer();
  }, cleanup);
  return { url, release, seen: (what: string) => seen.filter((s) => s === what).length };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe("an attacker holding many requests on one slow cold page", () => {
  it("gets past origin.maxWaiting a 503 at once, never held; the held ones and the victims are served", async () => {
    const origin = await slowColdOrigin();
    const cache = await herdless(origin.url, { origin: { maxWaiting: BOUND } });
    cleanup.push(() => cache.close());
    // The victim's pages, stored before the attack: /home stays fresh, /news expires (no stale-if-error:
    // breaker.serveStaleWhileOpen serves it when no origin answer reached the request).
    expect((await get(cache.base, "/home")).status).toBe(200);
    expect((await get(cache.base, "/news")).status).toBe(200);

    // The attacker: four times the bound, each request on its own connection.
    const settled: RawAnswer[] = [];
    const attack = Array.from({ length: 4 * BOUND }, () =>
      get(cache.base, "/cold").then((answer) => (settled.push(answer), answer)),
    );
    while (settled.length < 3 * BOUND) await tick();
    // The excess was answered while the origin still holds the page: nothing of it was held.
    expect(settled.map((answer) => answer.status)).toEqual(Array(3 * BOUND).fill(503));
    for (const refused of settled) {
      expect(refused.headers["retry-after"]).toBe("1");
      expect(refused.headers["cache-status"]).toContain("detail=waiting-full");
      expect(refused.headers["cache-control"]).toBe("no-store");
    }
    expect(origin.seen("GET /cold")).toBe(1);
    // A refused client keeps no idle connection open here (each one held heap): the answer ends it.
    const kept = await get(cache.base, "/cold", { headers: { connection: "keep-alive" } });
    expect(kept.status).toBe(503);
    expect(kept.headers.connection).toBe("close");

    // Victims while every place is taken: a fresh page, and an expired one whose copy answers at once.
    cache.clock.advance(2_000);
    const home = await get(cache.base, "/home");
    expect(home.status).toBe(200);
    expect(home.headers["cache-status"]).toContain("hit");
    const news = await get(cache.base, "/news");
    expect(news.status).toBe(200);
    expect(news.body).toBe("page /news #2");
    expect(news.headers["cache-status"]).toContain("fwd=stale");
    expect(news.headers["cache-status"]).toContain("detail=waiting-full");
    // A write the attacker's waits crowd out is refused before the origin sees it, not queued.
    const post = await get(cache.base, "/form", { method: "POST", headers: { "content-length": "2" }, body: "hi" });
    expect(post.status).toBe(503);
    expect(post.headers["cache-status"]).toContain("fwd=method; detail=waiting-full");
    expect(origin.seen("POST /form")).toBe(0);

    // The origin answers: the held requests get the one fetch, and the places are free again.
    origin.release();
    const answers = await Promise.all(attack);
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(BOUND);
    expect(answers.filter((answer) => answer.status === 503)).toHaveLength(3 * BOUND);
    expect(origin.seen("GET /cold")).toBe(1);
    const later = await get(cache.base, "/cold");
    expect(later.status).toBe(200);
    expect(later.headers["cache-status"]).toContain("hit");
    const renewed = await get(cache.base, "/news");
    expect(renewed.headers["cache-status"]).toContain("fwd=stale; fwd-status=200");
    expect(origin.seen("GET /news")).toBe(2);
  });

  it("counts requests queued for an origin permit too: a cold miss past the bound is refused, not queued", async () => {
    const origin = await slowColdOrigin();
    // Queue room for everyone: only the waiting bound refuses.
    const cache = await herdless(origin.url, { origin: { maxWaiting: BOUND, maxConcurrency: 1, maxQueue: 100 } });
    cleanup.push(() => cache.close());
    // Distinct cold pages: one holds the permit, the others queue behind it.
    const settled: RawAnswer[] = [];
    const attack = Array.from({ length: 2 * BOUND }, (_, i) =>
      get(cache.base, `/cold/${i}`).then((answer) => (settled.push(answer), answer)),
    );
    while (settled.length < BOUND) await tick();
    expect(settled.map((answer) => answer.headers["cache-status"])).toEqual(
      Array(BOUND).fill("herdless; fwd=uri-miss; detail=waiting-full"),
    );
    origin.release();
    const answers = await Promise.all(attack);
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(BOUND);
    // One origin request for each page held, none for a page refused.
    const fetched = Array.from({ length: 2 * BOUND }, (_, i) => origin.seen(`GET /cold/${i}`));
    expect(fetched.reduce((a, b) => a + b)).toBe(BOUND);
  });
});
