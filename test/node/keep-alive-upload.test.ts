import type { ServerResponse } from "node:http";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { herdless, servingOrigin } from "./attack-kit.ts";

/**
 * An upload answered before its body was read (a refusal: the queue full, the breaker open)
 * on a kept-alive connection: the rest of the body must still be read past, or the request
 * the client sends next on that connection is never parsed and never answered.
 */
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** Writes `bytes` on one connection and resolves with what came back once `answers` heads arrived, or after `ms`. */
function exchange(base: string, bytes: Buffer, answers: number, ms: number): Promise<string> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    let text = "";
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    const timer = setTimeout(() => finish(), ms);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(text);
    };
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      if ((text.match(/HTTP\/1\.1 \d{3} /g) ?? []).length >= answers && /\r\n\r\n[^]*$/.test(text)) {
        const last = text.lastIndexOf("HTTP/1.1 ");
        const length = /content-length: (\d+)/i.exec(text.slice(last))?.[1];
        const bodyStart = text.indexOf("\r\n\r\n", last) + 4;
        if (length !== undefined && text.length - bodyStart >= Number(length)) finish();
      }
    });
    socket.on("error", () => finish());
    socket.on("close", () => finish());
  });
}

describe("a kept-alive connection after an upload answered early (Node)", () => {
  it("the next request on it is answered: the rest of the refused upload is read past", async () => {
    const held: ServerResponse[] = [];
    const origin = await servingOrigin((req, res) => {
      if (req.url === "/slow") return void held.push(res);
      req.resume();
      req.on("end", () => res.writeHead(200, { "cache-control": "max-age=60" }).end(`page ${req.url}`));
    }, cleanup);
    cleanup.push(async () => void held.forEach((res) => res.destroy()));
    const cache = await herdless(origin, { origin: { maxConcurrency: 1, maxQueue: 0 } });
    cleanup.push(() => cache.close());
    // The one origin slot, taken by a page that does not answer yet.
    void exchange(cache.base, Buffer.from("GET /slow HTTP/1.1\r\nHost: shop.test\r\n\r\n"), 1, 2_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // The upload is refused (queue full) before its body is read; the client's next request follows it.
    const body = Buffer.alloc(300_000, 0x61);
    const head = "PUT /upload HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 300000\r\n\r\n";
    const next = "GET /after HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n";
    const text = await exchange(cache.base, Buffer.concat([Buffer.from(head), body, Buffer.from(next)]), 2, 3_000);
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
    expect(statuses[0]).toBe("503");
    expect(statuses).toHaveLength(2);
  });
});
