import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { get, herdless, type Herdless } from "./attack-kit.ts";

/**
 * An origin that writes more than the answer it was asked for: a body after a HEAD's head,
 * or an upload it answered without reading, left on the connection. Those bytes must never
 * become the next request's answer, stored for everyone.
 */
const POISON = "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 6\r\n\r\nPOISON";

let origin: Server | undefined;
let cache: Herdless | undefined;
const sockets = new Set<Socket>();
afterEach(async () => {
  await cache?.close();
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await new Promise((resolve) => (origin ? origin.close(resolve) : resolve(undefined)));
  origin = cache = undefined;
});

/** Answers each request head it reads; `/head` with a late poisoned "body", `/upload` before its body. */
async function sloppyOrigin(): Promise<string> {
  const server = (origin = createServer((socket: Socket) => {
    sockets.add(socket);
    let buffered = "";
    socket.on("error", () => undefined);
    socket.on("data", (data: Buffer) => {
      buffered += data.toString("latin1");
      for (let end = buffered.indexOf("\r\n\r\n"); end >= 0; end = buffered.indexOf("\r\n\r\n")) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const path = head.split(" ")[1]!;
        if (path === "/head") {
          socket.write("HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 71\r\n\r\n");
          setTimeout(() => socket.write(POISON), 40);
        } else if (path === "/extended") {
          // A stored page whose body runs past its Content-Length a moment late: after herdless
          // has its 5 bytes and has given the connection to the next request.
          socket.write("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello");
          setTimeout(() => socket.write(POISON), 40);
        } else if (path === "/upload") {
          // Answered before its body is read: the body stays on the connection, read as a request.
          socket.write("HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n");
        } else {
          const body = `page ${path}`;
          setTimeout(
            () =>
              socket.write(
                `HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
              ),
            30,
          );
        }
      }
    });
  }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("bytes an origin sends that were not asked for (Node)", () => {
  it("a body after a HEAD's head never becomes the next page stored for everyone", async () => {
    cache = await herdless(await sloppyOrigin());
    // Attacker: a relayed HEAD (its Cookie keeps it from the cache).
    const attack = get(cache.base, "/head", { method: "HEAD", headers: { cookie: "a=1" } });
    await new Promise((resolve) => setTimeout(resolve, 15));
    // Victim, while the poisoned bytes are still to come.
    const victim = await get(cache.base, "/victim");
    await attack;
    expect(victim.body).toBe("page /victim");
    const next = await get(cache.base, "/victim");
    expect(next.body).toBe("page /victim");
    expect(next.headers["cache-status"]).toContain("hit");
  });

  it("a GET answer that runs past its Content-Length after its connection was given to the next request never becomes that request's page", async () => {
    cache = await herdless(await sloppyOrigin());
    // Attacker: a page of the site whose answer runs on past its end (a comment echoed after it).
    const attack = await get(cache.base, "/extended");
    expect(attack.body).toBe("hello");
    // Victim, once that connection is back in the pool and before the extra bytes come.
    await new Promise((resolve) => setTimeout(resolve, 15));
    const victim = await get(cache.base, "/victim");
    expect(victim.body).toBe("page /victim");
    const next = await get(cache.base, "/victim");
    expect(next.body).toBe("page /victim");
    expect(next.headers["cache-status"]).toContain("hit");
  });

  it("an upload the origin answered unread is never read as a request whose answer is stored", async () => {
    cache = await herdless(await sloppyOrigin());
    const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    const attack = await get(cache.base, "/upload", {
      method: "POST",
      headers: { "content-type": "text/plain", "content-length": String(smuggled.length) },
      body: smuggled,
    });
    expect(attack.status).toBe(302);
    const victim = await get(cache.base, "/home");
    expect(victim.body).toBe("page /home");
    expect((await get(cache.base, "/home")).body).toBe("page /home");
  });
});
