/**
 * Two members' relays on one test Redis, for the relay's tests (src/node/redis/relay.test.ts, relay-window.test.ts).
 */
import { onTestFinished } from "vitest";
import { redisTestConnection } from "./redis-server.ts";
import type { Entry } from "../../src/core/http/entry.ts";
import { RedisNotifier } from "../../src/node/redis/notifier.ts";
import { RedisFlightRelay } from "../../src/node/redis/relay.ts";

const redis = redisTestConnection();

/** Two relays on their own connections, as in two processes of a fleet, and a way to take the key's lease. */
export async function twoProcesses(windowBytes = 64 * 1024 * 1024, stallMs = 30_000) {
  const prefix = redis.prefix();
  const make = async () => {
    const [connection, bulk] = await Promise.all([redis.connect(), redis.connect()]);
    const notifier = new RedisNotifier({ connection, prefix });
    onTestFinished(() => notifier.close());
    await notifier.ready();
    const leaseKey = (key: string) => `${prefix}lease:{${key}}`;
    const relay = new RedisFlightRelay({
      connection,
      bulk,
      notifier,
      prefix,
      leaseKey,
      ttlMs: 5_000,
      markTtlMs: 60_000,
      windowBytes,
      stallMs,
    });
    return { connection, notifier, relay };
  };
  const a = await make();
  const b = await make();
  const holdLease = (key: string, token: number) => a.connection.client.set(`${prefix}lease:{${key}}`, String(token));
  /** The follower's process waits on `key`, as a caller that found its lease busy does. */
  const waitOn = async (key = head.key) => {
    const stop = new AbortController();
    onTestFinished(() => stop.abort());
    await b.notifier.listen(key, 60_000, stop.signal).subscribed;
  };
  /** The relay's keys in Redis (records, pointers, reader counts). */
  const relayKeys = () => a.connection.client.keys(`${prefix}relay:*`);
  return { leader: a.relay, follower: b.relay, holdLease, waitOn, relayKeys, client: a.connection.client };
}

export const head: Omit<Entry, "body"> = {
  v: 2,
  key: "GET http://site.test/big",
  url: "http://site.test/big",
  status: 200,
  headers: [["content-type", "application/octet-stream"]],
  requestAt: 1,
  storedAt: 2,
  initialAgeMs: 0,
  staleAt: 60_002,
  swrUntil: 60_002,
  sieUntil: 60_002,
  deleteAt: 60_002,
  vary: [],
  mustRevalidate: false,
  token: 7,
  tags: [],
  negative: false,
};

/** A body the test feeds piece by piece. */
export function controlledBody() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
  return { body, controller };
}

export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(parts);
    parts.push(value);
  }
}
