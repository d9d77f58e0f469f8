import { createHash } from "node:crypto";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, type Herdless } from "./attack-kit.ts";

/**
 * WebSocket smuggling (Node): an origin, or an application whose status an attacker can steer,
 * answers a handshake `101` without switching and keeps reading HTTP on that connection. A
 * tunnel opened on such a `101` hands the attacker a raw HTTP connection to the origin, past
 * every header rule, the key and the origin cap. RFC 6455 §4.1: a `101` is a switch only with
 * `Upgrade: websocket` and the `Sec-WebSocket-Accept` of the key sent; anything else is a `502`.
 * (The Worker: workerd's client makes that check itself.)
 */
const KEY = "dGhlIHNhbXBsZSBub25jZQ==";

function accept(key: string): string {
  return createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
}

/** What the origin answers a handshake to each path (`key`: the Sec-WebSocket-Key it read). */
const SWITCHES: Record<string, (key: string) => string> = {
  "/ws/no-accept": () => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
  "/ws/wrong-accept": () =>
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${accept("AAAAAAAAAAAAAAAAAAAAAA==")}\r\n\r\n`,
  "/ws/h2c": (key) =>
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n" +
    `Sec-WebSocket-Accept: ${accept(key)}\r\n\r\n`,
  // Without `Connection: upgrade` node:http reads no switch at all (a 502 already).
  "/ws/no-connection": () => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
};

const FAULTS: Record<string, RegExp> = {
  "/ws/no-accept": /101 that is no WebSocket switch: it has no Sec-WebSocket-Accept/,
  "/ws/wrong-accept":
    /101 that is no WebSocket switch: its Sec-WebSocket-Accept .* does not match the key herdless sent/,
  "/ws/h2c": /101 that is no WebSocket switch: its Upgrade is "h2c", not websocket/,
  "/ws/no-connection": /status 101/,
};

interface Origin {
  url: string;
  /** The request-target of every request the origin read, in order. */
  seen: string[];
}

const cleanup: (() => Promise<void> | void)[] = [];
let cache: Herdless | undefined;
afterEach(async () => {
  await cache?.close();
  cache = undefined;
  for (const step of cleanup.splice(0).reverse()) await step();
});

/**
 * An origin that answers a handshake with the `101` of {@link SWITCHES} for its path (the
 * right one elsewhere) and then keeps parsing HTTP on the connection, as an application that
 * never switched does: each request after it is answered `internal page <path>`.
 */
async function halfSwitchingOrigin(): Promise<Origin> {
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    let buffered = "";
    socket.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("latin1");
      for (let end = buffered.indexOf("\r\n\r\n"); end >= 0; end = buffered.indexOf("\r\n\r\n")) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const path = head.split(" ")[1]!;
        seen.push(path);
        const key = /\r\nsec-websocket-key: *([^\r]*)/i.exec(head)?.[1] ?? "";
        if (/\r\nupgrade:/i.test(head)) {
          const right = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(key)}\r\n\r\n`;
          socket.write(SWITCHES[path]?.(key) ?? right);
        } else {
          const body = `internal page ${path}`;
          socket.write(`HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

/** A handshake for `path` (`key` null: none). */
function handshake(path: string, key: string | null = KEY): string {
  const keyField = key === null ? "" : `Sec-WebSocket-Key: ${key}\r\n`;
  return `GET ${path} HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${keyField}Sec-WebSocket-Version: 13\r\n\r\n`;
}

const SMUGGLED = "GET /internal HTTP/1.1\r\nHost: shop.test\r\n\r\n";

/**
 * The attacker's connection: the handshake, then (`pipelined`: in the same write; otherwise
 * once the answer's head is in) a plain request for `/internal`. Everything read until
 * herdless closes the connection or the internal page arrives.
 */
function attack(base: string, path: string, pipelined: boolean): Promise<string> {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(Number(port), "127.0.0.1", () =>
      socket.write(pipelined ? handshake(path) + SMUGGLED : handshake(path)),
    );
    cleanup.push(() => void socket.destroy());
    let text = "";
    let sent = pipelined;
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("latin1");
      if (!sent && text.includes("\r\n\r\n")) {
        sent = true;
        if (socket.writable) socket.write(SMUGGLED);
      }
      if (text.includes("internal page")) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on("close", () => resolve(text));
    socket.on("error", (error: Error & { code?: string }) => (error.code === "EPIPE" ? undefined : reject(error)));
  });
}

describe("WebSocket smuggling through a 101 that is no switch (Node)", () => {
  it.each(Object.keys(SWITCHES).flatMap((path) => [[path, false] as const, [path, true] as const]))(
    "%s (smuggled request pipelined: %s): the attacker gets a 502 naming the fault, /internal never reaches the origin",
    async (path, pipelined) => {
      const origin = await halfSwitchingOrigin();
      // One failure would open a breaker that counted these: the origin answered, it is not sick.
      cache = await herdless(origin.url, { breaker: { failureThreshold: 1, minFailingKeys: 1 } });
      for (let i = 0; i < 2; i++) {
        const answer = await attack(cache.base, path, pipelined);
        expect(answer).toMatch(/^HTTP\/1\.1 502 /);
        expect(answer).toMatch(FAULTS[path]!);
        expect(answer).not.toContain("internal page");
      }
      expect(origin.seen).toEqual([path, path]);
      const victim = await get(cache.base, "/page");
      expect([victim.status, victim.body]).toEqual([200, "internal page /page"]);
    },
  );

  it("a 101 with the right Sec-WebSocket-Accept is still tunnelled, byte for byte", async () => {
    const origin = await halfSwitchingOrigin();
    cache = await herdless(origin.url);
    const answer = await attack(cache.base, "/ws/right", false);
    expect(answer).toMatch(/^HTTP\/1\.1 101 /);
    expect(answer.toLowerCase()).toContain(`sec-websocket-accept: ${accept(KEY).toLowerCase()}`);
    // The origin chose to speak HTTP after a real switch: the tunnel is its to carry.
    expect(origin.seen).toEqual(["/ws/right", "/internal"]);
  });

  it.each([
    ["no Sec-WebSocket-Key", null, /needs a Sec-WebSocket-Key/],
    ["a key that is no 16-byte nonce", "not-a-nonce", /Sec-WebSocket-Key "not-a-nonce" is not one 16-byte nonce/],
    ["two keys", `${KEY}, ${KEY}`, /is not one 16-byte nonce/],
  ] as const)(
    "a handshake with %s is a 400 naming it: no switch could be checked, so none is asked",
    async (_, key, fault) => {
      const origin = await halfSwitchingOrigin();
      cache = await herdless(origin.url);
      const bytes = handshake("/ws/no-accept", key);
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(new URL(cache!.base).port), "127.0.0.1", () => socket.write(bytes + SMUGGLED));
        let text = "";
        socket.on("data", (chunk: Buffer) => {
          text += chunk.toString("latin1");
          if (text.includes("internal page")) socket.destroy();
        });
        socket.on("close", () => resolve(text));
        socket.on("error", reject);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toMatch(fault);
      expect(origin.seen).toEqual([]);
    },
  );
});
