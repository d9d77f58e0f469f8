import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { parseConfig, type ConfigInput } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

const logger = jsonLogger("silent");
const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/**
 * A WebSocket echo origin that also answers plain HTTP (the request line and its Upgrade and
 * Connection fields, as the origin saw them). `/forbidden` refuses the upgrade with a 403,
 * `/silent` never answers it; `/cached` is a page stored for a minute.
 */
interface EchoOrigin {
  url: string;
  /** The head of every upgrade the origin accepted. */
  upgrades: IncomingHttpHeaders[];
  /** Every plain HTTP request (not an upgrade) it answered, with its fields. */
  plain: { url: string; headers: IncomingHttpHeaders; body: string }[];
  /** Connections the origin's WebSocket server holds open now. */
  open(): number;
  /** The origin's side of each open connection. */
  clients(): Set<WebSocket>;
  server: Server;
}

async function echoOrigin(): Promise<EchoOrigin> {
  const upgrades: IncomingHttpHeaders[] = [];
  const plain: EchoOrigin["plain"] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      plain.push({ url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString() });
      const body = JSON.stringify({ url: req.url, upgrade: req.headers.upgrade ?? null });
      const cacheControl = req.url === "/cached" ? "max-age=60" : "no-store";
      res.writeHead(200, { "content-type": "application/json", "cache-control": cacheControl }).end(body);
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  const silent = new Set<Duplex>();
  server.on("upgrade", (req: IncomingMessage, socket, head) => {
    if (req.url === "/silent") {
      silent.add(socket);
      return;
    }
    if (req.url === "/bad-switch") {
      // A 101 that switches to nothing (no Upgrade), a body after it.
      socket.end("HTTP/1.1 101 X\r\ncontent-length: 2\r\n\r\nhi");
      return;
    }
    if (req.url === "/forbidden") {
      socket.end("HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\nnot in");
      return;
    }
    upgrades.push(req.headers);
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on("message", (data, binary) => {
        if (data.toString() === "close please") ws.close(4001, "asked");
        else ws.send(data, { binary });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(async () => {
    for (const client of wss.clients) client.terminate();
    for (const socket of silent) socket.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    upgrades,
    plain,
    open: () => wss.clients.size,
    clients: () => wss.clients,
    server,
  };
}

async function proxy(originUrl: string, origin: Partial<ConfigInput["origin"]> = {}): Promise<RunningServer> {
  const config = parseConfig({ origin: { url: originUrl, ...origin }, admin: { token: "a-long-admin-token-1234" } });
  const running = await startServer({ stack: localStack({ config, logger }), logger, port: 0 });
  cleanup.push(() => running.close());
  return running;
}

/** A WebSocket client through `base`: opened, or the status it was refused with. */
function open(
  base: string,
  path = "/chat",
  headers: Record<string, string> = {},
  protocols: string[] = [],
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace("http", "ws")}${path}`, protocols, { headers });
    cleanup.push(() => ws.terminate());
    ws.once("open", () => resolve(ws));
    ws.once("unexpected-response", (_req, res) =>
      reject(Object.assign(new Error(`refused: ${res.statusCode}`), { status: res.statusCode, headers: res.headers })),
    );
    ws.once("error", reject);
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: string; binary: boolean }> {
  return new Promise((resolve) => ws.once("message", (data, binary) => resolve({ data: String(data), binary })));
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: String(reason) })));
}

/** Writes `head` on a raw connection and reads until the peer closes or `until` matches. */
function raw(base: string, head: string, until?: RegExp): Promise<string> {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(Number(port), "127.0.0.1", () => socket.write(head));
    let text = "";
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      if (until?.test(text)) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on("close", () => resolve(text));
    socket.on("error", reject);
    cleanup.push(() => void socket.destroy());
  });
}

/** Opens a WebSocket once herdless has freed a slot (it frees one when both sides of a tunnel closed). */
async function openOnceFree(base: string): Promise<WebSocket> {
  for (let i = 0; ; i++) {
    try {
      return await open(base);
    } catch (error) {
      if (i >= 50 || (error as { status?: number }).status !== 503) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

describe("WebSocket pass-through (Node)", () => {
  it("tunnels a WebSocket to the origin: messages both ways, forwarded headers, subprotocol", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url);
    const ws = await open(herdless.url, "/chat?room=1", { cookie: "s=1" }, ["chat"]);
    ws.send("hello");
    expect(await nextMessage(ws)).toEqual({ data: "hello", binary: false });
    ws.send(Buffer.from([1, 2, 3]));
    const echoed = await nextMessage(ws);
    expect(echoed.binary).toBe(true);
    const [seen] = origin.upgrades;
    expect(seen?.upgrade).toBe("websocket");
    expect(seen?.cookie).toBe("s=1");
    expect(seen?.via).toBe("1.1 herdless");
    expect(seen?.["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen?.["sec-websocket-protocol"]).toBe("chat");
    expect(ws.protocol).toBe("chat");
  });

  it("passes the origin's close on to the client, and the client's on to the origin", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url);
    const first = await open(herdless.url);
    const ended = closed(first);
    first.send("close please");
    expect(await ended).toEqual({ code: 4001, reason: "asked" });

    const second = await open(herdless.url);
    await waitFor(() => origin.open() === 1, "the origin's socket");
    second.close(1000, "bye");
    await waitFor(() => origin.open() === 0, "the origin to see the close");
  });

  it("answers the origin's refusal of the upgrade (403) as it is, and stores nothing", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url);
    const refused = await open(herdless.url, "/forbidden").catch(
      (error: { status: number; headers: IncomingHttpHeaders }) => error,
    );
    expect(refused).toMatchObject({ status: 403 });
    expect((refused as { headers: IncomingHttpHeaders }).headers["cache-status"]).toBe(
      "herdless; fwd=bypass; fwd-status=403",
    );
  });

  it("ignores an h2c upgrade: the origin gets an ordinary request without Upgrade, and the client an ordinary answer", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url);
    const answer = await raw(
      herdless.url,
      "GET /page HTTP/1.1\r\nHost: site.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
      /\r\n\r\n\{.*\}$/s,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(answer).toContain('"upgrade":null');
    expect(origin.upgrades).toHaveLength(0);
    expect(origin.plain[0]?.headers["http2-settings"]).toBeUndefined();
  });

  it("keeps an h2c upgrade's connection and its body: a POST and a request behind it are answered as usual", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url);
    const answer = await raw(
      herdless.url,
      "POST /form HTTP/1.1\r\nHost: site.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\nhello" +
        "GET /next HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
    );
    expect(answer.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
    expect(origin.plain.map((r) => r.url).sort()).toEqual(["/form", "/next"]);
    expect(origin.plain.find((r) => r.url === "/form")?.body).toBe("hello");
  });

  it("neither collapses nor caches a handshake: each reaches the origin, even on a URL whose page is stored", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url);
    expect((await fetch(`${herdless.url}/cached`)).headers.get("cache-status")).toContain("stored");
    expect((await fetch(`${herdless.url}/cached`)).headers.get("cache-status")).toContain("hit");
    const [a, b] = await Promise.all([open(herdless.url, "/cached"), open(herdless.url, "/cached")]);
    a.send("a");
    b.send("b");
    expect([(await nextMessage(a)).data, (await nextMessage(b)).data]).toEqual(["a", "b"]);
    expect(origin.upgrades).toHaveLength(2);
    expect(origin.plain).toHaveLength(1);
  });

  it("refuses a handshake with 503 while the breaker is open, as any uncached request", async () => {
    const origin = await echoOrigin();
    const down = `http://127.0.0.1:${(origin.server.address() as AddressInfo).port}`;
    origin.server.closeAllConnections();
    await new Promise<void>((resolve) => origin.server.close(() => resolve()));
    const config = parseConfig({
      origin: { url: down },
      breaker: { failureThreshold: 1, minFailingKeys: 1, probeIntervalMs: 60_000 },
    });
    const herdless = await startServer({ stack: localStack({ config, logger }), logger, port: 0 });
    cleanup.push(() => herdless.close());
    const unreachable = await open(herdless.url).catch((error: { status: number }) => error);
    expect(unreachable).toMatchObject({ status: 502 });
    const refused = await open(herdless.url).catch((error: { status: number; headers: IncomingHttpHeaders }) => error);
    expect(refused).toMatchObject({ status: 503 });
    expect((refused as { headers: IncomingHttpHeaders }).headers["cache-status"]).toBe(
      "herdless; fwd=bypass; detail=breaker-open",
    );
  });

  it("bounds the handshake by origin.timeoutMs: an origin that never answers it is a 504", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url, { timeoutMs: 300 });
    const timedOut = await open(herdless.url, "/silent").catch((error: { status: number }) => error);
    expect(timedOut).toMatchObject({ status: 504 });
  });

  it("answers a 101 that switches to nothing (no Upgrade) with a 502 naming the fault, never an empty close", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url);
    const refused = await open(herdless.url, "/bad-switch").catch((error: { status: number }) => error);
    expect(refused).toMatchObject({ status: 502 });
    expect(origin.open()).toBe(0);
  });

  it("never tunnels the admin API", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url);
    const refused = await open(herdless.url, "/__herdless/stats").catch((error: { status: number }) => error);
    expect(refused).toMatchObject({ status: 401 });
    expect(origin.upgrades).toHaveLength(0);
    expect(origin.plain).toHaveLength(0);
  });

  it("with origin.webSockets off, a WebSocket handshake is an ordinary request, as before", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url, { webSockets: false });
    const refused = await open(herdless.url, "/chat").catch((error: { status: number }) => error);
    expect(refused).toMatchObject({ status: 200 });
    expect(origin.upgrades).toHaveLength(0);
    expect(origin.plain[0]?.headers.upgrade).toBeUndefined();
  });

  it("refuses a handshake past origin.maxWebSockets with a 503, and takes one again once a tunnel closed", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url, { maxWebSockets: 2 });
    const first = await open(herdless.url);
    await open(herdless.url);
    const refused = await open(herdless.url).catch((error: { status: number; headers: IncomingHttpHeaders }) => error);
    expect(refused).toMatchObject({ status: 503 });
    const headers = (refused as { headers: IncomingHttpHeaders }).headers;
    expect(headers["cache-status"]).toBe("herdless; fwd=bypass; detail=tunnel-limit");
    expect(headers["retry-after"]).toBe("1");
    expect(origin.upgrades).toHaveLength(2);
    first.close();
    await waitFor(() => origin.open() === 1, "the first tunnel to close");
    const third = await openOnceFree(herdless.url);
    third.send("again");
    expect((await nextMessage(third)).data).toBe("again");
  });

  it("holds no origin permit while a tunnel is open: pages are served past origin.maxConcurrency tunnels", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url, { maxConcurrency: 1, queueTimeoutMs: 200 });
    await open(herdless.url);
    await open(herdless.url);
    const res = await fetch(`${herdless.url}/page`);
    expect(res.status).toBe(200);
  });

  it("closes a tunnel that carries nothing for origin.webSocketIdleTimeoutMs", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url, { webSocketIdleTimeoutMs: 1_000 });
    const ws = await open(herdless.url);
    const ended = closed(ws);
    expect((await ended).code).toBe(1006);
    await waitFor(() => origin.open() === 0, "the origin's side to close");
  });

  it("ends the tunnel, not the process, when either side resets", async () => {
    const origin = await echoOrigin();
    const herdless = await proxy(origin.url);
    const ws = await open(herdless.url);
    const ended = closed(ws);
    await waitFor(() => origin.open() === 1, "the origin's socket");
    for (const client of [...origin.clients()]) client.terminate();
    expect((await ended).code).toBe(1006);
    const next = await open(herdless.url);
    next.send("still here");
    expect((await nextMessage(next)).data).toBe("still here");
  });
});
