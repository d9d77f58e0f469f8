import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, reflectingOrigin } from "./attack-kit.ts";

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
});
