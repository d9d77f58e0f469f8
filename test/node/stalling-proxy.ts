/**
 * A Redis that stalls with a command in its socket, for one connection: the command runs after
 * its sender gave up on it (test/node/fleet-ghost-lease.test.ts, src/node/redis/relay-stall.test.ts).
 */
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { onTestFinished } from "vitest";
import type { RedisServer } from "./redis-server.ts";

/**
 * A TCP proxy to `redis` that stalls like Redis does: the first time a member sends a command
 * naming `marker`, that connection's bytes are held (no reply comes back), and they reach
 * Redis, which runs them, once the member gave up and closed the socket and `resumed` settled.
 */
export async function stallingProxy(
  redis: Pick<RedisServer, "url">,
  marker: string,
  resumed: Promise<void> = Promise.resolve(),
) {
  const port = Number(new URL(redis.url).port);
  let stalled = false;
  let ran = false;
  const server = createTcpServer((down: Socket) => {
    const up = connect(port, "127.0.0.1");
    const held: Buffer[] = [];
    let holding = false;
    down.on("data", (chunk: Buffer) => {
      if (!stalled && chunk.includes(marker)) holding = stalled = true;
      if (holding) held.push(chunk);
      else up.write(chunk);
    });
    up.on("data", (chunk: Buffer) => void (holding || down.write(chunk)));
    down.on("close", () => {
      if (!holding) return void up.end();
      void resumed.then(() => {
        for (const chunk of held) up.write(chunk);
        up.end();
        ran = true;
      });
    });
    up.on("close", () => down.destroy());
    down.on("error", () => undefined);
    up.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => new Promise((resolve) => server.close(() => resolve())));
  const url = `redis://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, stalled: () => stalled, ran: () => ran };
}
