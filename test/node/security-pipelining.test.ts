import type { IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { MAX_PIPELINED } from "../../src/node/pipeline-bound.ts";
import { startServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";
import { get, servingOrigin } from "./attack-kit.ts";

/**
 * HTTP/1.1 pipelining attacked through the Node server: one connection writes thousands of
 * requests at once and reads nothing; then a visitor asks.
 */

const logger = jsonLogger("silent");
const cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const PIPELINED = 20_000;
const ONE = "GET /slow HTTP/1.1\r\nHost: shop.test\r\n\r\n";

describe("security: pipelined requests (Node)", () => {
  it("a connection that writes 20,000 requests for a page being fetched has at most a read's worth started, and every answer once it reads", async () => {
    let slowAsked = 0;
    const held: (() => void)[] = [];
    const origin = await servingOrigin((req, res) => {
      const answer = () => res.writeHead(200, { "cache-control": "max-age=60" }).end(`${req.url} page`);
      if (req.url !== "/slow") return answer();
      slowAsked++;
      held.push(answer);
    }, cleanup);
    const config = parseConfig({ origin: { url: origin } });
    const stack = localStack({ config, logger, clock: new ManualClock(Date.now()) });
    const running = await startServer({ stack, logger, port: 0 });
    cleanup.push(() => running.close());
    let started = 0;
    let attackerSide: Socket | undefined;
    running.server.on("request", (req: IncomingMessage) => {
      if (req.url === "/slow") {
        started++;
        attackerSide ??= req.socket;
      }
    });

    const attacker = connect(running.port, "127.0.0.1");
    await new Promise((resolve) => attacker.once("connect", resolve));
    let answers = 0;
    let tail = "";
    const status = "HTTP/1.1 200 OK";
    attacker.on("data", (chunk: Buffer) => {
      const text = tail + chunk.toString("latin1");
      answers += text.split(status).length - 1;
      // Too short to hold a whole status line (counted already), long enough for a cut one.
      tail = text.slice(-(status.length - 1));
    });
    attacker.pause(); // reads nothing for now
    attacker.write(ONE.repeat(PIPELINED));

    // herdless stops reading the connection: before, it started every request it had read
    // (100,000 of them held ~280 MiB, past the heap a default cache is given).
    await vi.waitFor(() => expect(attackerSide?.isPaused()).toBe(true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(started).toBeGreaterThan(MAX_PIPELINED);
    expect(started).toBeLessThanOrEqual(MAX_PIPELINED + Math.ceil(65_536 / ONE.length));

    const victim = await get(running.url, "/other");
    expect(victim.status).toBe(200);
    expect(victim.body).toBe("/other page");

    // Nothing is refused: once the origin answers and the client reads, every request is answered, in one fetch.
    for (const answer of held.splice(0)) answer();
    attacker.resume();
    await vi.waitFor(() => expect(answers).toBe(PIPELINED), { timeout: 60_000, interval: 50 });
    expect(started).toBe(PIPELINED);
    expect(slowAsked).toBe(1);
    attacker.destroy();
  }, 90_000);
});
