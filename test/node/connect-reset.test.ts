import { connect } from "node:net";
import { afterEach, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

/**
 * A CONNECT is answered 405 on its raw socket, which node:http hands over without its 'error'
 * listener. A client that resets the connection as the answer is written made that write fail
 * with ECONNRESET, an unheard 'error' event: the process exited, every visitor's request and
 * the cache with it. One unauthenticated client, a few packets.
 */
const logger = jsonLogger("silent");
let running: RunningServer | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

it("a CONNECT whose client resets the connection at once crashes nothing", async () => {
  const config = parseConfig({ origin: { url: "http://127.0.0.1:9" } });
  running = await startServer({ stack: localStack({ config, logger }), logger, port: 0 });
  const unheard: unknown[] = [];
  const onUncaught = (error: unknown) => unheard.push(error);
  process.on("uncaughtException", onUncaught);
  try {
    for (let i = 0; i < 20; i++) {
      const socket = connect(running.port, "127.0.0.1");
      socket.on("error", () => undefined);
      socket.write(`CONNECT x${i}:443 HTTP/1.1\r\nhost: x\r\n\r\n`);
      if (i % 2 === 0) socket.resetAndDestroy();
      else setTimeout(() => socket.resetAndDestroy(), i % 5);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  } finally {
    process.off("uncaughtException", onUncaught);
  }
  expect(unheard).toEqual([]);
  const answer = await fetch(`${running.url}/__herdless/health`).catch((error: unknown) => error);
  expect(answer).toBeInstanceOf(Response);
});
