import { createHash } from "node:crypto";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { afterEach, expect, it } from "vitest";
import { nodeOriginFetch, upgradedSocket } from "../../src/node/origin-fetch.ts";

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
/** RFC 6455 §4.2.2: the accept for KEY, without which herdless takes no 101 for a switch. */
const ACCEPT = createHash("sha1").update(`${KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");

/**
 * An origin that switches protocols and resets the connection at once. node:http detaches the
 * socket at the 101 (its 'error' listener goes with it): until the tunnel splices it, nothing
 * hears its errors. Between the two, the engine may wait on I/O (a Redis guard's release of a
 * half-open breaker's probe): an ECONNRESET there was an unhandled 'error' event, and the
 * process exited with every in-flight request, on a fleet member.
 */
const servers: { close(): void }[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

it("an origin that resets its switched connection before the tunnel splices it crashes nothing", async () => {
  const origin = createServer((socket: Socket) => {
    socket.on("error", () => undefined);
    socket.once("data", () => {
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${ACCEPT}\r\n\r\n`,
      );
      setTimeout(() => socket.resetAndDestroy(), 5);
    });
  });
  servers.push(origin);
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const { port } = origin.address() as AddressInfo;
  const unheard: unknown[] = [];
  const onUncaught = (error: unknown) => unheard.push(error);
  process.on("uncaughtException", onUncaught);
  try {
    const response = await nodeOriginFetch(`http://127.0.0.1:${port}/ws`, {
      method: "GET",
      headers: [
        ["upgrade", "websocket"],
        ["connection", "upgrade"],
        ["sec-websocket-key", KEY],
      ],
    });
    expect(response.status).toBe(101);
    // What the engine may await before the tunnel splices (a guard release over Redis).
    await new Promise((resolve) => setTimeout(resolve, 100));
    upgradedSocket(response)?.socket.destroy();
  } finally {
    process.off("uncaughtException", onUncaught);
  }
  expect(unheard).toEqual([]);
});
