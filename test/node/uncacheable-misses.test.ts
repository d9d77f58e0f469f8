/**
 * Misses of a page whose answer cannot be shared (core fill/pass-marks.ts), through the real
 * Node server: once herdless has seen the origin answer a URL uncacheable, its visitors go to
 * the origin side by side instead of waiting on one another's round trip; a page that turns
 * cacheable is collapsed and stored again after one round trip; and an attacker who makes the
 * origin answer one request uncacheable sends at most `origin.maxConcurrency` visitors with it.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { afterEach, describe, expect, it, vi } from "vitest";
import { get, herdless, servingOrigin, type RawAnswer } from "./attack-kit.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** An origin that holds every request until the test answers it, with the headers `answer` gives. */
async function heldOrigin(answer: (req: IncomingMessage) => Record<string, string>) {
  const held: { req: IncomingMessage; res: ServerResponse }[] = [];
  let seen = 0;
  const url = await servingOrigin((req, res) => {
    seen++;
    req.resume();
    held.push({ req, res });
  }, cleanup);
  return {
    url,
    seen: () => seen,
    /** Waits until `n` requests are held at once, then answers them all. */
    async answer(n: number): Promise<void> {
      await vi.waitFor(() => expect(held.length).toBe(n), { timeout: 5_000, interval: 5 });
      for (const { req, res } of held.splice(0)) res.writeHead(200, answer(req)).end(`page for ${req.url}`);
    },
  };
}

async function proxy(originUrl: string, extra: Parameters<typeof herdless>[1] = {}) {
  const server = await herdless(originUrl, extra);
  cleanup.push(() => server.close());
  return server.base;
}

const visitors = (base: string, n: number, headers: Record<string, string> = {}): Promise<RawAnswer[]> =>
  Promise.all(Array.from({ length: n }, () => get(base, "/account", { headers })));

describe("misses of a page whose answer cannot be shared", () => {
  it("go to the origin side by side once herdless has seen one such answer", async () => {
    // A dynamic page: no lifetime, a session cookie for every visitor.
    const origin = await heldOrigin(() => ({ "set-cookie": "session=new; HttpOnly" }));
    const base = await proxy(origin.url);

    // The first visitors wait on the first one's fetch, as for any unknown page, then go alone.
    const first = visitors(base, 5);
    await origin.answer(1);
    await origin.answer(4);
    expect((await first).map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);

    // From then on every visitor is at the origin at once: no one waits on another's round trip.
    const next = visitors(base, 5);
    await origin.answer(5);
    for (const answer of await next) {
      expect(answer.status).toBe(200);
      expect(answer.headers["cache-status"]).toMatch(/fwd=uri-miss; fwd-status=200; detail=uncacheable/);
      // Each visitor got its own answer, cookie included.
      expect(answer.headers["set-cookie"]).toBe("session=new; HttpOnly");
    }
    expect(origin.seen()).toBe(10);
  });

  it("collapse and are stored again once the page turns cacheable", async () => {
    let cacheable = false;
    const origin = await heldOrigin(() =>
      cacheable ? { "cache-control": "max-age=60" } : { "cache-control": "private" },
    );
    const base = await proxy(origin.url);
    const first = visitors(base, 1);
    await origin.answer(1);
    await first;

    cacheable = true;
    // Still marked: one of these fills as any miss does, the others go side by side with it.
    const wave = visitors(base, 3);
    await origin.answer(3);
    const statuses = (await wave).map((a) => a.headers["cache-status"]).sort();
    expect(statuses).toEqual([
      "herdless; fwd=uri-miss; fwd-status=200; detail=uncacheable",
      "herdless; fwd=uri-miss; fwd-status=200; detail=uncacheable",
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
    ]);
    // The fill stored the page, now cacheable: the next herd is served from it.
    const herd = await visitors(base, 5);
    for (const answer of herd) {
      expect(answer.body).toBe("page for /account");
      expect(answer.headers["cache-status"]).toMatch(/^herdless; hit/);
    }
    expect(origin.seen()).toBe(4);
  });

  it("collapse as before with coordinator.uncacheableMemoryMs 0", async () => {
    const origin = await heldOrigin(() => ({ "cache-control": "no-store" }));
    const base = await proxy(origin.url, { coordinator: { uncacheableMemoryMs: 0 } });
    for (let wave = 0; wave < 2; wave++) {
      const answers = visitors(base, 3);
      await origin.answer(1);
      await origin.answer(2);
      await answers;
    }
    expect(origin.seen()).toBe(6);
  });

  it("attack: one uncacheable answer sends at most origin.maxConcurrency visitors to the origin", async () => {
    // The origin answers a debug header no-store (the header is passed on, not part of the key).
    const origin = await heldOrigin((req) =>
      req.headers["x-debug"] === "1" ? { "cache-control": "no-store" } : { "cache-control": "max-age=60" },
    );
    const base = await proxy(origin.url, { origin: { maxConcurrency: 2 } });
    const attack = visitors(base, 1, { "x-debug": "1" });
    await origin.answer(1);
    await attack;

    // The victims' herd: one fills, two go straight to the origin beside it (the key's relays,
    // as many as origin.maxConcurrency), and the rest wait on the fill, which is stored.
    const victims = visitors(base, 20);
    await origin.answer(2);
    await origin.answer(1);
    for (const answer of await victims) {
      expect(answer.status).toBe(200);
      expect(answer.body).toBe("page for /account");
    }
    expect(origin.seen()).toBe(1 + 3);
    expect((await get(base, "/account")).headers["cache-status"]).toMatch(/^herdless; hit/);
  });
});
