import { createServer, type IncomingMessage } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { get, herdless, reflectingOrigin, servingOrigin } from "./attack-kit.ts";
import { launchCli } from "./cli-process.ts";

/**
 * Connection exhaustion: an attacker opens connections and holds them, sending nothing or half
 * a request head. Without a cap, 19,990 of them took every one of the process's 20,000 open
 * files: no visitor could connect, and herdless could open no origin connection either. The
 * cap (`server.maxConnections`, small here) closes quiet connections, oldest first, for new
 * ones, so the visitor who comes next gets their page, a cold miss included.
 */
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});

const CAP = 8;

interface Held {
  socket: Socket;
  closed: boolean;
}

/** A connection the attacker opens and holds, writing `bytes` once connected (nothing by default). */
function hold(base: string, bytes = ""): Promise<Held> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const held: Held = { socket: connect(Number(port), hostname), closed: false };
    held.socket.on("error", () => {});
    held.socket.resume();
    held.socket.once("close", () => (held.closed = true));
    held.socket.once("connect", () => {
      if (bytes) held.socket.write(bytes);
      resolve(held);
    });
    cleanup.push(async () => void held.socket.destroy());
  });
}

/** `count` connections, one after another (the server accepts them in that order). */
async function holdMany(base: string, count: number, bytes = ""): Promise<Held[]> {
  const held: Held[] = [];
  for (let i = 0; i < count; i++) held.push(await hold(base, bytes));
  return held;
}

async function attackedHerdless(originUrl: string) {
  const h = await herdless(originUrl, { server: { maxConnections: CAP } });
  cleanup.push(() => h.close());
  return h;
}

const HALF_HEAD = "GET /slow HTTP/1.1\r\nHost: shop.test\r\nX-Pad: ";

describe("idle connections against the connection cap", () => {
  it("idle connections past the cap are closed, oldest first, and a visitor's cold miss is served", async () => {
    const origin = await reflectingOrigin();
    cleanup.push(() => origin.close());
    const { base } = await attackedHerdless(origin.url);

    const attacker = await holdMany(base, 3 * CAP);
    // The server holds at most the cap: the oldest were closed for the newer ones.
    await vi.waitFor(() => expect(attacker.filter((a) => a.closed).length).toBeGreaterThanOrEqual(2 * CAP));
    expect(attacker.slice(-CAP + 1).every((a) => !a.closed)).toBe(true);

    const victim = await get(base, "/page");
    expect(victim.status).toBe(200);
    expect(victim.body).toContain("GET /page");
    expect(origin.seen.map((s) => s.url)).toEqual(["/page"]);
  });

  it("connections that send half a request head and stop are closed past the cap, and a visitor is served", async () => {
    const origin = await reflectingOrigin();
    cleanup.push(() => origin.close());
    const { base } = await attackedHerdless(origin.url);

    const attacker = await holdMany(base, 3 * CAP, HALF_HEAD);
    await vi.waitFor(() => expect(attacker.filter((a) => a.closed).length).toBeGreaterThanOrEqual(2 * CAP));

    const victim = await get(base, "/cold?v=1");
    expect(victim.status).toBe(200);
    expect(origin.seen.map((s) => s.url)).toEqual(["/cold?v=1"]);
  });

  it("an idle kept-alive connection goes before one still sending its head, and a visitor's answer under way is kept", async () => {
    const origin = await holdingOrigin();
    const { base } = await attackedHerdless(origin.url);

    // The visitor's cold miss is under way (the origin holds it) on the oldest connection.
    const visitor = keptAliveAnswer(base, "/visitor");
    await vi.waitFor(() => expect(origin.arrived).toContain("/visitor"));
    const heads = await holdMany(base, 3, HALF_HEAD);
    // A kept-alive connection whose answer is written: idle since (and its answer shows the
    // server has read the heads written before it).
    const keptAlive = keptAliveAnswer(base, "/now");
    await keptAlive.answer;
    const fresh = await holdMany(base, CAP - 5);
    const newcomer = await hold(base);
    // One over the cap: the oldest idle connection is closed, none still sending a head.
    await vi.waitFor(() => expect(keptAlive.closed()).toBe(true));
    expect(heads.some((h) => h.closed)).toBe(false);
    expect(fresh.some((h) => h.closed) || newcomer.closed).toBe(false);

    // A flood takes the quiet connections, never the visitor's.
    const flood = await holdMany(base, 2 * CAP);
    await vi.waitFor(() => expect(flood.filter((f) => f.closed).length).toBeGreaterThanOrEqual(CAP));
    origin.release();
    const answer = await visitor.answer;
    expect(answer).toContain("HTTP/1.1 200");
    expect(answer).toContain("page /visitor");
  });

  it("when every connection has an answer under way, the new one is refused and the others are answered", async () => {
    const origin = await holdingOrigin();
    const { base } = await attackedHerdless(origin.url);

    const busy = Array.from({ length: CAP }, (_, i) => keptAliveAnswer(base, `/busy/${i}`));
    await vi.waitFor(() => expect(origin.arrived.length).toBe(CAP));
    const refused = await get(base, "/late").catch(() => undefined);
    expect(refused?.status).not.toBe(200);

    origin.release();
    for (const [i, b] of busy.entries()) expect(await b.answer).toContain(`page /busy/${i}`);
    expect(origin.arrived).not.toContain("/late");
  });
});

describe("WebSocket tunnels against the connection cap", () => {
  it("an open tunnel is never closed for a newcomer: with every other connection busy, the newcomer is refused", async () => {
    const origin = await holdingOrigin();
    const h = await herdless(origin.url, { server: { maxConnections: 3 } });
    cleanup.push(() => h.close());

    const ws = new WebSocket(`${h.base.replace("http", "ws")}/chat`);
    cleanup.push(async () => void ws.terminate());
    await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
    const busy = [keptAliveAnswer(h.base, "/busy/0"), keptAliveAnswer(h.base, "/busy/1")];
    await vi.waitFor(() => expect(origin.arrived).toEqual(expect.arrayContaining(["/busy/0", "/busy/1"])));

    const refused = await get(h.base, "/late").catch(() => undefined);
    expect(refused?.status).not.toBe(200);
    ws.send("still here");
    expect(String(await new Promise((resolve) => ws.once("message", resolve)))).toBe("still here");
    origin.release();
    for (const [i, b] of busy.entries()) expect(await b.answer).toContain(`page /busy/${i}`);
  });
});

describe("readers that take nothing of their answers against the connection cap", () => {
  it("a connection whose client has taken no byte of its answer for a minute is closed for a visitor, only then", async () => {
    const MiB = 1024 * 1024;
    const page = Buffer.alloc(16 * MiB, 97);
    const originUrl = await servingOrigin((req, res) => {
      req.resume();
      const body = req.url === "/big" ? page : Buffer.from(`page ${req.url}`);
      res.writeHead(200, { "cache-control": "max-age=600", "content-length": String(body.length) }).end(body);
    }, cleanup);
    const h = await herdless(originUrl, { server: { maxConnections: 3 } });
    cleanup.push(() => h.close());
    expect((await get(h.base, "/big")).body.length).toBe(page.length);

    // Each asks for the stored 16 MiB and never reads past the first bytes.
    const readers = await Promise.all([0, 1, 2].map(() => stalledReader(h.base, "/big")));
    const early = await get(h.base, "/page").catch(() => undefined);
    expect(early?.status).not.toBe(200);

    h.clock.advance(60_000);
    const victim = await get(h.base, "/page");
    expect(victim.status).toBe(200);
    expect(victim.body).toBe("page /page");
    // Read on, the one closed ends short; the others get the whole page, their connections kept.
    for (const reader of readers) reader.drain();
    await vi.waitFor(() => expect(readers.every((r) => r.ended || r.received > page.length)).toBe(true));
    expect(readers.filter((r) => r.ended).map((r) => r.received < page.length)).toEqual([true]);
  });
});

describe.runIf(process.platform === "linux")("npx herdless under an open-file limit, with no cap configured", () => {
  /** Few enough files that the attack takes them all without a cap: 256. */
  const OPEN_FILES = 256;

  it("an attacker holding more idle connections than the process has files leaves a visitor's cold miss served, and the process alive", async () => {
    const origin = await reflectingOrigin();
    cleanup.push(() => origin.close());
    const { child, url, maxConnections } = await launchCli(["--origin", origin.url], {}, OPEN_FILES);
    cleanup.push(async () => void child.kill());
    // Derived: 256 files less 128 (Redis, logs, files), 2 × 8 origin permits, and the origin
    // side of the tunnels that may take half of what is left.
    expect(maxConnections).toBe(56);

    await holdMany(url, OPEN_FILES + 50);
    const victim = await get(url, "/cold?after=attack");
    expect(victim.status).toBe(200);
    expect(victim.body).toContain("GET /cold?after=attack");
    expect(origin.seen.map((s) => s.url)).toEqual(["/cold?after=attack"]);
    expect(child.exitCode).toBeNull();
    expect((await get(url, "/cold?after=attack")).headers["cache-status"]).toMatch(/hit/);
  });
});

/**
 * An origin that holds every answer but `/now` until released, and echoes on a WebSocket; the
 * paths it was asked, as they arrive.
 */
async function holdingOrigin(): Promise<{ url: string; arrived: string[]; release: () => void }> {
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const arrived: string[] = [];
  const server = createServer((req, res) => {
    req.resume();
    arrived.push(req.url ?? "");
    const answer = () => res.writeHead(200, { "cache-control": "no-store" }).end(`page ${req.url}`);
    if (req.url === "/now") answer();
    else void released.then(answer);
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) =>
    wss.handleUpgrade(req, socket, head, (ws) => ws.on("message", (data) => ws.send(String(data)))),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(async () => {
    for (const client of wss.clients) client.terminate();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arrived, release };
}

/** A request on a kept-alive connection: its answer's bytes once they hold the page, and whether the server closed it. */
function keptAliveAnswer(base: string, target: string): { answer: Promise<string>; closed: () => boolean } {
  const { hostname, port } = new URL(base);
  let closed = false;
  const socket = connect(Number(port), hostname, () =>
    socket.write(`GET ${target} HTTP/1.1\r\nHost: shop.test\r\n\r\n`),
  );
  cleanup.push(async () => void socket.destroy());
  const answer = new Promise<string>((resolve, reject) => {
    let text = "";
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      if (text.includes(`page ${target}`)) resolve(text);
    });
    socket.on("close", () => {
      closed = true;
      reject(new Error(`connection closed before the answer: ${JSON.stringify(text)}`));
    });
    socket.on("error", () => {});
  });
  answer.catch(() => {});
  return { answer, closed: () => closed };
}

/** Asks for `target` on a kept-alive connection, and takes the first bytes of the answer only, until `drain`. */
function stalledReader(base: string, target: string): Promise<StalledReader> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    const reader: StalledReader = {
      received: 0,
      ended: false,
      drain: () => void socket.on("data", (chunk: Buffer) => (reader.received += chunk.length)),
    };
    socket.on("error", () => {});
    socket.once("end", () => (reader.ended = true));
    socket.once("connect", () => socket.write(`GET ${target} HTTP/1.1\r\nHost: shop.test\r\n\r\n`));
    // Paused: the stream reads up to its high-water mark, then the kernel's buffers fill, and the answer stalls.
    socket.once("readable", () => resolve(reader));
    cleanup.push(async () => void socket.destroy());
  });
}

interface StalledReader {
  received: number;
  /** The server closed the connection (seen once the bytes before its end are read). */
  ended: boolean;
  drain(): void;
}
