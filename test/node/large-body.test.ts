import type { Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";
import { BYTES, expectedHash, halfThenWait, read } from "./large-body-origin.ts";

let proxy: RunningServer | undefined;
let originServer: Server | undefined;
afterEach(async () => {
  await proxy?.close();
  originServer?.close();
});

describe("a large body herd on one Node process", () => {
  it(
    "50 concurrent cold requests for a 20 MB body: 1 origin request, bytes before the origin finished, 50 identical complete bodies",
    { timeout: 120_000 },
    async () => {
      const origin = await halfThenWait();
      originServer = origin.server;
      const logger = jsonLogger("silent");
      const config = parseConfig({ origin: { url: origin.url } });
      proxy = await startServer({
        stack: localStack({ config, logger, clock: new ManualClock(Date.now()) }),
        logger,
        port: 0,
      });
      const readings = Array.from({ length: 50 }, () => read(`${proxy!.url}/big`));
      // Every client has bytes while the origin still holds back the second half.
      const statuses = await Promise.all(readings.map((r) => r.firstBytes));
      expect(statuses.every((s) => s === 200)).toBe(true);
      expect(origin.requests()).toBe(1);
      origin.finish();
      const bodies = await Promise.all(readings.map((r) => r.done));
      expect(bodies.filter((b) => b.bytes !== BYTES || b.hash !== expectedHash)).toEqual([]);
      expect(bodies.filter((b) => b.cacheStatus.includes("collapsed"))).toHaveLength(49);
      expect(origin.requests()).toBe(1);
      // Stored whole: the next request is a hit with the same bytes.
      const after = await read(`${proxy.url}/big`).done;
      expect(after).toMatchObject({ hash: expectedHash, bytes: BYTES });
      expect(after.cacheStatus).toContain("hit");
      expect(origin.requests()).toBe(1);
    },
  );
});
