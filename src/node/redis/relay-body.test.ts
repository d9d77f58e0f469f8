import { describe, expect, it } from "vitest";
import type { RedisConnection } from "./connection.ts";
import { followPieces } from "./relay-body.ts";

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
