import { systemClock, type Clock } from "../../core/clock.ts";
import { BACKOFF_FORMAT_VERSION, type BackoffRecord, type BackoffStore } from "../../core/guard/key-backoff.ts";
import { checkPrefix, slotKey, type RedisConnection } from "./connection.ts";

export interface RedisBackoffStoreOptions {
  connection: RedisConnection;
  /** Namespace shared with the {@link RedisLeaseManager} of the same deployment. */
  prefix?: string;
  clock?: Clock;
}

/**
 * The fleet-wide {@link BackoffStore}: one Redis key per cache key, in the slot of the key's
 * lease (it is read and written by the lease's holder), holding the record as JSON with a
 * physical TTL up to its `forgetAt`, so a key gone quiet leaves nothing in Redis. The
 * process's clock also judges `forgetAt` on read, as every store's does.
 *
 * @example
 * const backoff = new RedisBackoffStore({ connection, prefix: "herdless:" });
 */
export class RedisBackoffStore implements BackoffStore {
  private readonly connection: RedisConnection;
  private readonly prefix: string;
  private readonly clock: Clock;

  constructor(options: RedisBackoffStoreOptions) {
    this.connection = options.connection;
    this.prefix = checkPrefix(options.prefix ?? "herdless:");
    this.clock = options.clock ?? systemClock;
  }

  async get(key: string): Promise<BackoffRecord | undefined> {
    const text = await this.connection.run("backoff get", (client) => client.get(this.redisKey(key)));
    const record = text === null ? undefined : parseRecord(text);
    return record && this.clock.now() < record.forgetAt ? record : undefined;
  }

  async set(key: string, record: BackoffRecord): Promise<void> {
    const ttlMs = Math.ceil(record.forgetAt - this.clock.now());
    if (ttlMs <= 0) return this.delete(key);
    await this.connection.run("backoff set", (client) =>
      client.set(this.redisKey(key), JSON.stringify(record), "PX", ttlMs),
    );
  }

  async delete(key: string): Promise<void> {
    await this.connection.run("backoff delete", (client) => client.del(this.redisKey(key)));
  }

  /** The Redis key of `key`'s backoff (exposed for operators and tests); one slot with its lease. */
  redisKey(key: string): string {
    return slotKey(this.prefix, "backoff", key);
  }
}

/** A record of this format, or undefined (another format, or damaged: the key starts over). */
function parseRecord(text: string): BackoffRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const { v, failures, until, forgetAt, failedAt, askedBy } = value as Record<string, unknown>;
  if (v !== BACKOFF_FORMAT_VERSION) return undefined;
  if (typeof failures !== "number" || typeof until !== "number" || typeof forgetAt !== "number") return undefined;
  return {
    v,
    failures,
    until,
    forgetAt,
    ...(typeof failedAt === "number" ? { failedAt } : {}),
    ...(typeof askedBy === "string" ? { askedBy } : {}),
  };
}
