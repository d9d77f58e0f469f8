import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/cloudflare/worker.ts";
import { EDGE } from "./edge-harness.ts";
import { testOrigin, type TestOrigin } from "./test-origin.ts";

/** The Worker with `origin` as its origin and `config` as its HERDLESS_CONFIG. */
function edgeFor(origin: TestOrigin, config: object = {}) {
  const workerEnv = { ...env, ORIGIN_URL: origin.url, HERDLESS_CONFIG: JSON.stringify(config) };
  return (path: string, headers: Record<string, string>) =>
    worker.fetch(new Request(`${EDGE}${path}`, { headers }), workerEnv, createExecutionContext());
}

/** Cloudflare's edge rewrites the Connection a Worker sees (to Keep-Alive): Upgrade alone says "WebSocket". */
const HANDSHAKE = { upgrade: "websocket", connection: "Keep-Alive" };

function nextMessage(ws: WebSocket): Promise<string | ArrayBuffer> {
  return new Promise((resolve) =>
    ws.addEventListener("message", (event) => resolve(event.data as string | ArrayBuffer), { once: true }),
  );
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) =>
    ws.addEventListener("close", (event) => resolve({ code: event.code, reason: event.reason }), { once: true }),
  );
}

describe("WebSocket pass-through (Worker)", () => {
  it("tunnels a WebSocket to the origin: messages both ways, text and binary, forwarded headers", async () => {
    const origin = await testOrigin();
    const res = await edgeFor(origin)("/chat?room=1", {
      ...HANDSHAKE,
      cookie: "s=1",
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
      "sec-websocket-protocol": "chat, superchat",
      "sec-websocket-extensions": "permessage-deflate; client_max_window_bits",
    });
    expect(res.status).toBe(101);
    expect(res.headers.get("sec-websocket-protocol")).toBe("chat");
    expect(res.headers.get("cache-status")).toBe("herdless; fwd=bypass; fwd-status=101");
    const ws = res.webSocket!;
    ws.accept();
    ws.binaryType = "arraybuffer";
    ws.send("hello");
    expect(await nextMessage(ws)).toBe("hello");
    ws.send(new Uint8Array([1, 2, 3]));
    const got = await nextMessage(ws);
    expect([...new Uint8Array(got as ArrayBuffer)]).toEqual([1, 2, 3]);
    const [seen] = (await origin.stats()).requests;
    expect(seen?.path).toBe("/chat?room=1");
    expect(seen?.headers.upgrade).toBe("websocket");
    expect(seen?.headers.cookie).toBe("s=1");
    expect(seen?.headers.via).toBe("1.1 herdless");
    ws.close(1000, "done");
  });

  it("tunnels a handshake to a URL whose page this isolate holds in memory: never answered from the cache", async () => {
    const origin = await testOrigin();
    const edge = edgeFor(origin);
    await (await edge("/page", {})).text();
    const hit = await edge("/page", {});
    expect(hit.headers.get("cache-status")).toMatch(/hit/);
    await hit.text();
    const res = await edge("/page", HANDSHAKE);
    expect(res.status).toBe(101);
    res.webSocket!.accept();
    res.webSocket!.close(1000);
    expect(await origin.count()).toBe(2);
  });

  it("passes the origin's close on to the client with its code and reason", async () => {
    const origin = await testOrigin();
    const ws = (await edgeFor(origin)("/chat", HANDSHAKE)).webSocket!;
    ws.accept();
    const ended = closed(ws);
    ws.send("close please");
    expect(await ended).toEqual({ code: 4001, reason: "asked" });
  });

  it("answers the origin's refusal of the upgrade (403) as it is", async () => {
    const origin = await testOrigin();
    const res = await edgeFor(origin)("/forbidden", HANDSHAKE);
    expect(res.status).toBe(403);
    expect(res.webSocket).toBeNull();
    expect(res.headers.get("cache-status")).toBe("herdless; fwd=bypass; fwd-status=403");
    expect(await res.text()).toBe("not in");
  });

  it("ignores an h2c upgrade: the origin gets an ordinary request without Upgrade", async () => {
    const origin = await testOrigin();
    const res = await edgeFor(origin)("/page", { upgrade: "h2c", connection: "Upgrade, HTTP2-Settings" });
    expect(res.status).toBe(200);
    expect(res.webSocket).toBeNull();
    await res.text();
    const [seen] = (await origin.stats()).requests;
    expect(seen?.headers.upgrade).toBeUndefined();
  });

  it("with origin.webSockets off, a WebSocket handshake is an ordinary request", async () => {
    const origin = await testOrigin();
    const res = await edgeFor(origin, { origin: { webSockets: false } })("/chat", HANDSHAKE);
    expect(res.status).toBe(200);
    await res.text();
    expect((await origin.stats()).requests[0]?.headers.upgrade).toBeUndefined();
  });

  it("never tunnels the admin API", async () => {
    const origin = await testOrigin();
    const res = await edgeFor(origin)("/__herdless/stats", HANDSHAKE);
    expect(res.status).not.toBe(101);
    await res.text();
    expect(await origin.count()).toBe(0);
  });

  it("refuses a handshake past origin.maxWebSockets with a 503, and takes one again once a tunnel closed", async () => {
    const origin = await testOrigin();
    const edge = edgeFor(origin, { origin: { maxWebSockets: 1 } });
    const first = (await edge("/chat", HANDSHAKE)).webSocket!;
    first.accept();
    const refused = await edge("/chat", HANDSHAKE);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("cache-status")).toBe("herdless; fwd=bypass; detail=tunnel-limit");
    await refused.text();
    const ended = closed(first);
    first.send("close please");
    await ended;
    let again = await edge("/chat", HANDSHAKE);
    for (let i = 0; i < 50 && again.status === 503; i++) {
      await again.text();
      await new Promise((resolve) => setTimeout(resolve, 20));
      again = await edge("/chat", HANDSHAKE);
    }
    expect(again.status).toBe(101);
    again.webSocket!.accept();
    again.webSocket!.close(1000);
  });
});
