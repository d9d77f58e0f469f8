import { createHash } from "node:crypto";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";

const BYTES = 20_000_000;
const body = Buffer.alloc(BYTES);
for (let i = 0; i < BYTES; i++) body[i] = (i * 31 + (i >>> 13)) & 0xff;
const expectedHash = createHash("sha256").update(body).digest("hex");

/** An origin that sends the head and half the body, then the rest when the test says so. */
async function halfThenWait(): Promise<{ url: string; requests: () => number; finish: () => void; server: Server }> {
  let requests = 0;
  let finish!: () => void;
  const released = new Promise<void>((resolve) => (finish = resolve));
  const server = createServer((req, res) => {
    requests++;
    res.writeHead(200, { "content-length": String(BYTES), "cache-control": "max-age=60" });
    res.write(body.subarray(0, BYTES / 2));
    void released.then(() => res.end(body.subarray(BYTES / 2)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests: () => requests, finish, server };
}

interface Reading {
  /** Resolves with the status once the first body bytes arrived. */
  firstBytes: Promise<number>;
  /** Resolves with the SHA-256 of the whole body and the Cache-Status. */
  done: Promise<{ hash: string; bytes: number; cacheStatus: string }>;
}

function read(url: string): Reading {
  let first!: (status: number) => void;
  const firstBytes = new Promise<number>((resolve) => (first = resolve));
  const done = new Promise<{ hash: string; bytes: number; cacheStatus: string }>((resolve, reject) => {
    request(url, (res) => {
      const hash = createHash("sha256");
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        if (bytes === 0) first(res.statusCode ?? 0);
        bytes += chunk.length;
        hash.update(chunk);
      });
      res.on("end", () =>
        resolve({ hash: hash.digest("hex"), bytes, cacheStatus: String(res.headers["cache-status"]) }),
      );
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
  return { firstBytes, done };
}

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
