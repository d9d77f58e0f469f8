import { createHash } from "node:crypto";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** The body of the large-body herd tests: 20 MB whose bytes vary with the offset, so a misplaced chunk shows. */
export const BYTES = 20_000_000;
const body = Buffer.alloc(BYTES);
for (let i = 0; i < BYTES; i++) body[i] = (i * 31 + (i >>> 13)) & 0xff;
export const expectedHash = createHash("sha256").update(body).digest("hex");

export interface HalfThenWait {
  url: string;
  requests(): number;
  /** Sends the second half of every body held back. */
  finish(): void;
  server: Server;
}

/**
 * An origin that sends the head and half the body, then the rest when the test says so;
 * with `heads`, each answer starts only once it resolves.
 */
export async function halfThenWait(heads?: Promise<void>): Promise<HalfThenWait> {
  let requests = 0;
  let finish!: () => void;
  const released = new Promise<void>((resolve) => (finish = resolve));
  const server = createServer(async (req, res) => {
    requests++;
    await heads;
    res.writeHead(200, { "content-length": String(BYTES), "cache-control": "max-age=60" });
    res.write(body.subarray(0, BYTES / 2));
    void released.then(() => res.end(body.subarray(BYTES / 2)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests: () => requests, finish, server };
}

export interface Reading {
  /** Resolves with the status once the first body bytes arrived. */
  firstBytes: Promise<number>;
  /** True once the first body bytes arrived. */
  started(): boolean;
  /** For an answer other than 200: its status, Cache-Status and the start of its body, for a failing test to show. */
  refusal(): string | undefined;
  /** Resolves with the SHA-256 of the whole body and the Cache-Status. */
  done: Promise<{ hash: string; bytes: number; cacheStatus: string }>;
}

/** A GET whose body is hashed as it arrives (nothing kept), under `host` when given. */
export function read(url: string, host?: string): Reading {
  let first!: (status: number) => void;
  let started = false;
  let refusal: string | undefined;
  const firstBytes = new Promise<number>((resolve) => (first = resolve));
  const done = new Promise<{ hash: string; bytes: number; cacheStatus: string }>((resolve, reject) => {
    request(url, host === undefined ? {} : { headers: { host } }, (res) => {
      const hash = createHash("sha256");
      let bytes = 0;
      res.on("data", (chunk: Buffer) => {
        if (bytes === 0) {
          started = true;
          if (res.statusCode !== 200)
            refusal = `${res.statusCode} ${String(res.headers["cache-status"])}: ${chunk.toString().slice(0, 200)}`;
          first(res.statusCode ?? 0);
        }
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
  return { firstBytes, started: () => started, refusal: () => refusal, done };
}
