import { describe, expect, it } from "vitest";
import type { RedisConnection } from "./connection.ts";
import { alwaysReadyBody } from "../../../test/always-ready-body.ts";
import { followPieces, PieceWriter } from "./relay-body.ts";

describe("followPieces", () => {
  it("a Redis command that fails mid-body errors the body and ends its watch at once, not at the record's TTL", async () => {
    let stopped = 0;
    const bulk = { run: () => Promise.reject(new Error("Redis is gone")) } as unknown as RedisConnection;
    const body = followPieces({
      bulk,
      place: () => Promise.resolve(1),
      watch: { subscribed: Promise.resolve(true), stop: () => void stopped++ },
      onAppend: () => undefined,
      stream: "relay:x",
    });
    await expect(body.getReader().read()).rejects.toThrow("Redis is gone");
    expect(stopped).toBe(1);
  });
});

describe("PieceWriter", () => {
  it("a body in one-byte chunks (an origin that flushes each byte) goes to the record whole and in order, at a constant cost per chunk: 300,000 of them in about a second, where one shift per chunk over all those queued took minutes", async () => {
    const { body, bytes } = alwaysReadyBody(300_000, 1);
    const pieces: Uint8Array[] = [];
    let end = "";
    const writer = new PieceWriter(async (field, value) => {
      if (field === "e") end = String(value);
      else pieces.push(value as Uint8Array);
      // Redis's round trip: the reader queues a window of chunks meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 0));
      return true;
    });
    const started = performance.now();
    await writer.pump(body);
    expect(end).toBe("complete");
    expect(pieces.reduce((n, piece) => n + piece.byteLength, 0)).toBe(bytes);
    // Each one-byte chunk i of alwaysReadyBody is filled with i % 256.
    let at = 0;
    expect(pieces.every((piece) => piece.every((byte) => byte === at++ % 256))).toBe(true);
    expect(performance.now() - started).toBeLessThan(10_000);
  }, 30_000);
});
