import { connect, createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, raw, reflectingOrigin } from "./attack-kit.ts";

/**
 * Slow uploads: an attacker starts a POST and sends its body slowly, or never finishes it.
 * The origin waits for the body; herdless must not let that wait hold the origin's permits
 * (the victim's cold miss refused) nor count as a sick origin (the breaker opened).
 */
const running: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const r of running.splice(0).reverse()) await r.close();
});

/** Opens a POST that promises `length` bytes and sends only `sent` of them; its answer, when one comes. */
function stalledUpload(base: string, path: string, length: number, sent: number): { answer: Promise<string> } {
  const socket: Socket = connect(Number(new URL(base).port), "127.0.0.1", () =>
    socket.write(
      `POST ${path} HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/octet-stream\r\n` +
        `Content-Length: ${length}\r\n\r\n${"u".repeat(sent)}`,
    ),
  );
  running.push({ close: async () => void socket.destroy() });
  let text = "";
  socket.on("data", (data: Buffer) => (text += data.toString("latin1")));
  socket.on("error", () => undefined);
  const answer = new Promise<string>((resolve) => {
    socket.on("data", () => text.includes("\r\n\r\n") && resolve(text));
    socket.on("close", () => resolve(text));
  });
  return { answer };
}

describe("slow uploads (Node)", () => {
  it("POSTs whose small bodies never finish hold no origin permit: the victim's cold miss is served meanwhile", async () => {
    const origin = await reflectingOrigin();
    running.push(origin);
    const cache = await herdless(origin.url, { origin: { maxConcurrency: 2, timeoutMs: 5_000, queueTimeoutMs: 300 } });
    running.push(cache);
    // As many as the cap, each a login form that never ends.
    for (const path of ["/login", "/signup"]) stalledUpload(cache.base, path, 100, 6);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const victim = await get(cache.base, "/page");
    expect([victim.status, victim.headers["cache-status"]]).toEqual([
      200,
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
    ]);
    // A small upload that completes reaches the origin whole.
    const login = await get(cache.base, "/login", {
      method: "POST",
      headers: { "content-length": "6", "content-type": "application/x-www-form-urlencoded" },
      body: "user=a",
    });
    expect(login.status).toBe(200);
    expect(login.body).toContain("POST /login body=user=a");
  });

  it("large uploads stalled past origin.timeoutMs on many paths are the client's 408, never counted against the origin: the breaker stays closed", async () => {
    const origin = await reflectingOrigin();
    running.push(origin);
    const cache = await herdless(origin.url, { origin: { maxConcurrency: 8, timeoutMs: 500 } });
    running.push(cache);
    // Past what herdless reads before the origin call: streamed, then stalled.
    const uploads = Array.from({ length: 6 }, (_, i) => stalledUpload(cache.base, `/upload${i}`, 1_000_000, 100_000));
    const answers = await Promise.all(uploads.map((u) => u.answer));
    for (const answer of answers) expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answers[0]).toContain("had not all arrived");
    const victim = await get(cache.base, "/page");
    expect([victim.status, victim.headers["cache-status"]]).toEqual([
      200,
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
    ]);
  });

  it("POSTs that send their headers and no body spend no upload budget, however many: later bodiless POSTs still hold no permit, and the victim is served", async () => {
    const origin = await reflectingOrigin();
    running.push(origin);
    const cache = await herdless(origin.url, { origin: { maxConcurrency: 2, timeoutMs: 5_000, queueTimeoutMs: 300 } });
    running.push(cache);
    // Past the 128 uploads the budget reserved 64 KiB for, each on arrival: headers, then nothing.
    for (let i = 0; i < 130; i++) stalledUpload(cache.base, `/reserve${i}`, 1_000, 0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Then as many tiny POSTs as the cap, with no body either: they were streamed and held the permits.
    for (let i = 0; i < 4; i++) stalledUpload(cache.base, `/tiny${i}`, 100, 0);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const victim = await get(cache.base, "/page");
    expect([victim.status, victim.headers["cache-status"]]).toEqual([
      200,
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
    ]);
    expect(origin.seen.map((r) => r.url)).toEqual(["/page"]);
  });

  it("large uploads that stall on their permits while a cold miss queues are cut with 408: the victim is served before its queue timeout", async () => {
    const origin = await reflectingOrigin();
    running.push(origin);
    // The pace of a client holding a permit back is looked at every half queueTimeoutMs.
    const cache = await herdless(origin.url, {
      origin: { maxConcurrency: 2, maxQueue: 20, queueTimeoutMs: 2_000, timeoutMs: 5_000 },
    });
    running.push(cache);
    // As many as the cap, each past what is read before the permit (64 KiB), then nothing.
    const uploads = [0, 1].map((i) => stalledUpload(cache.base, `/upload${i}`, 1_000_000, 65_537));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const started = performance.now();
    const victim = await get(cache.base, "/page");
    expect([victim.status, victim.headers["cache-status"]]).toEqual([
      200,
      "herdless; fwd=uri-miss; fwd-status=200; ttl=60; stored",
    ]);
    expect(performance.now() - started).toBeLessThan(2_000);
    // The one cut for it; the other, with nobody queued behind it now, goes on at its pace.
    const first = await Promise.race(uploads.map((u) => u.answer));
    expect(first).toMatch(/^HTTP\/1\.1 408 /);
    expect(first).toContain("others waited for");
  });
});

/** An origin that counts the chunks of a chunked upload as its wire carries them, and answers how many bytes in how many. */
async function chunkCountingOrigin(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((socket) => {
    let text = "";
    socket.on("data", (data: Buffer) => {
      text += data.toString("latin1");
      const start = text.indexOf("\r\n\r\n") + 4;
      let at = start;
      let chunks = 0;
      let bytes = 0;
      for (;;) {
        const eol = text.indexOf("\r\n", at);
        if (start < 4 || eol < 0) return;
        const size = parseInt(text.slice(at, eol), 16);
        if (size === 0) break;
        if (text.length < eol + 2 + size + 2) return;
        chunks++;
        bytes += size;
        at = eol + 2 + size + 2;
      }
      const body = `got ${bytes} in ${chunks} chunks`;
      socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("uploads in tiny chunks (Node)", () => {
  it("a body sent as 100,000 chunks of one byte reaches the origin in a few large chunks, not one per chunk the client made", async () => {
    const origin = await chunkCountingOrigin();
    running.push(origin);
    const cache = await herdless(origin.url);
    running.push(cache);
    // The attacker: 600 KB on the wire for 100,000 bytes, each its own chunk.
    const body = "1\r\nu\r\n".repeat(100_000) + "0\r\n\r\n";
    const answer = await raw(
      cache.base,
      `POST /upload HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(answer.status).toBe(200);
    const [, bytes, chunks] = /got (\d+) in (\d+) chunks/.exec(answer.body) ?? [];
    expect(Number(bytes)).toBe(100_000);
    // One write per turn of the event loop (or per 64 KiB): before, thousands of one-byte chunks.
    expect(Number(chunks)).toBeLessThan(100);
  });
});
