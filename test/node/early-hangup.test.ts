/**
 * Browsers cancel requests all the time (a navigation away, a closed tab): often before the
 * origin's head arrives. Such a client must leave nothing behind that others wait on: the
 * download the others share, and the origin permit of a relayed request.
 */
import { request } from "node:http";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { herdless, sendAsTaken, servingOrigin } from "./attack-kit.ts";

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const SIZE = 8 * 1024 * 1024; // past maxEntryBytes below: shared as it streams, never kept
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An origin whose large file's head waits until `open()`. */
async function heldFile() {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let requests = 0;
  const url = await servingOrigin((req, res) => {
    requests++;
    req.resume();
    void gate.then(() => {
      res.writeHead(200, { "cache-control": "max-age=60", "content-length": String(SIZE) });
      sendAsTaken(res, SIZE, Buffer.alloc(64 * 1024, 7));
    });
  }, cleanup);
  return { url, open, requests: () => requests };
}

/** A client that sends its request and hangs up at once, before any answer. */
function hangUp(base: string, path: string, cookie = ""): Promise<void> {
  const { port } = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(port), "127.0.0.1", () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: shop.test\r\n${cookie}\r\n`);
      socket.destroy();
      resolve();
    });
  });
}

/** A client that reads the whole answer: how many bytes it got. */
function download(base: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    request(`${base}${path}`, { headers: { host: "shop.test", ...headers } }, (res) => {
      let bytes = 0;
      res.on("data", (data: Buffer) => (bytes += data.length));
      res.on("end", () => resolve(bytes));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}

describe("a client that hangs up before the origin's head", () => {
  it.each(["leads the fetch", "joins it"])(
    "and %s never holds back the download it shared: the others get every byte at once",
    async (role) => {
      const origin = await heldFile();
      const cache = await herdless(origin.url, { cache: { maxEntryBytes: 1024 * 1024 } });
      cleanup.push(() => cache.close());
      let victim: Promise<number>;
      if (role === "leads the fetch") {
        await hangUp(cache.base, "/big.iso");
        await tick(30);
        victim = download(cache.base, "/big.iso");
      } else {
        victim = download(cache.base, "/big.iso");
        await tick(30);
        await hangUp(cache.base, "/big.iso");
      }
      await tick(30);
      const started = performance.now();
      origin.open();
      expect(await victim).toBe(SIZE);
      // Held back, it waited for the ghost until origin.streamIdleTimeoutMs (30 s).
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(origin.requests()).toBe(1);
    },
  );

  it("never keeps a relayed request's origin connection and permit: the cap is free for the next visitor", async () => {
    const origin = await heldFile();
    const cache = await herdless(origin.url, { origin: { maxConcurrency: 2 } });
    cleanup.push(() => cache.close());
    // Two requests relayed alone (a session cookie), each hung up on before the head.
    await hangUp(cache.base, "/big.iso?a", "Cookie: session=a\r\n");
    await hangUp(cache.base, "/big.iso?b", "Cookie: session=b\r\n");
    await tick(30);
    origin.open();
    const started = performance.now();
    expect(await download(cache.base, "/big.iso?c", { cookie: "session=c" })).toBe(SIZE);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it("withdraws a relayed request from the guard's queue when its client hangs up: the origin never gets work nobody waits for", async () => {
    const origin = await heldFile();
    const cache = await herdless(origin.url, { origin: { maxConcurrency: 1 } });
    cleanup.push(() => cache.close());
    // A signed-in visitor's slow page holds the one permit; five reloads queue behind it and are cut off.
    const first = download(cache.base, "/big.iso?first", { cookie: "session=first" });
    await tick(30);
    for (const user of ["a", "b", "c", "d", "e"])
      await hangUp(cache.base, `/big.iso?${user}`, `Cookie: session=${user}\r\n`);
    await tick(30);
    origin.open();
    expect(await first).toBe(SIZE);
    expect(await download(cache.base, "/big.iso?victim", { cookie: "session=victim" })).toBe(SIZE);
    // The first download and the victim's: none of the five abandoned requests reached the origin.
    expect(origin.requests()).toBe(2);
  });

  it("cancels a relayed request's origin call when its client hangs up before the head (a POST sent and abandoned)", async () => {
    let closedUnanswered = 0;
    let requests = 0;
    const url = await servingOrigin((req, res) => {
      requests++;
      req.resume();
      // Answers only after 2 s, unless the caller hangs up first.
      const answer = setTimeout(() => res.end("done"), 2_000);
      res.once("close", () => {
        if (!res.writableFinished) closedUnanswered++;
        clearTimeout(answer);
      });
    }, cleanup);
    const cache = await herdless(url, { origin: { maxConcurrency: 1 } });
    cleanup.push(() => cache.close());
    const { port } = new URL(cache.base);
    const socket = connect(Number(port), "127.0.0.1", () => {
      socket.write("POST /order HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 2\r\n\r\nok");
    });
    while (requests === 0) await tick(10);
    socket.destroy();
    while (closedUnanswered === 0) await tick(10);
    // The permit is free at once: the next visitor's request reaches the origin well before 2 s.
    const started = performance.now();
    const next = download(cache.base, "/other", { cookie: "session=v" });
    while (requests < 2) await tick(10);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(closedUnanswered).toBe(1);
    await next;
  });
});
