import { randomUUID } from "node:crypto";
import { decodeEntryMeta } from "../../core/http/entry.ts";
import { ALONE, RELAYED, STREAMING, type FlightRelay, type RelayedAnswer } from "../../core/fill/relay.ts";
import { checkPrefix, slotKey, type RedisConnection } from "./connection.ts";
import { APPEND, FINISH, OFFER, PLACE, placesKey, readersKey, ROOM, TAKE } from "./relay-scripts.ts";
import { WITHDRAW, withdrawnKey } from "./relay-scripts.ts";
import { Redo } from "./redo.ts";
import type { RedisNotifier } from "./notifier.ts";
import { followPieces, PIECE_BYTES, PieceWriter, type Room } from "./relay-body.ts";
import { confirmedError, headOf, liveFeed, parseHead } from "./relay-head.ts";

export interface RedisFlightRelayOptions {
  /** Heads and pointers go through this connection. */
  connection: RedisConnection;
  /** Body pieces go through this one (megabytes must not hold up the leases' small commands). */
  bulk: RedisConnection;
  /** Wakes the readers of a relayed body as pieces are appended; same prefix as the relay. */
  notifier: RedisNotifier;
  /** Namespace shared with the leases of the same deployment. */
  prefix: string;
  /** The Redis key of a key's lease (RedisLeaseManager.leaseKey): a pointer counts only while its flight holds it, or nobody does. */
  leaseKey: (key: string) => string;
  /** How long a relayed answer outlives its last write or read; the lease term (coordinator.lockLeaseMs). */
  ttlMs: number;
  /**
   * How long the mark of a body streamed for nobody ({@link STREAMING}) may stand: the longest
   * a flight holds its lease (origin.streamTimeoutMs and a lease term). It counts only while
   * its flight holds the lease, so an old one says nothing.
   */
  markTtlMs: number;
  /**
   * The most of one body a record holds at once (cache.maxEntryBytes): past it the writer
   * drops what every reader has read and waits for the slowest, so a body of any size costs
   * Redis this much, not its whole length.
   */
  windowBytes: number;
  /** A reader that has not moved on for this long holds the window back no more (origin.streamIdleTimeoutMs). */
  stallMs: number;
}

/** Body entries a record holds at most: the window, and never under 1 MiB (so a tiny cache.maxEntryBytes still streams). */
const windowPieces = (bytes: number): number => Math.max(4, Math.ceil(bytes / PIECE_BYTES));
/**
 * How long after an offer a waiter that heard of it may still come to read it from its
 * start: until then a full window waits for it, after it the writer moves on (a waiter that
 * comes later waits for the flight's end, as for a body copied for nobody).
 */
const TAKE_GRACE_MS = 5_000;

/**
 * The {@link FlightRelay} of a Redis fleet. Each offered answer is a Redis stream
 * `<prefix>relay:{<key>}:<id>`: entry `0-1` the head, then `0-2`, `0-3`… body pieces of at
 * most 256 KiB, then an end entry (`complete`, or `failed:<code>` when the origin failed
 * mid-body). Its followers read it in order as it grows, woken by a publish on a channel of
 * the stream's name with every piece; a gap or a lost record errors their body (never a
 * short body that looks whole). A pointer `<prefix>relay:{<key>}` = `<token> <id>`, in the
 * slot of the key's lease, tells a waiter that missed the announcement where the answer is;
 * it counts only while the lease is the flight's own or free (a newer flight's waiters wait
 * for that one).
 *
 * Copies only for waiters: an answer is offered only while another process waits on the
 * key (subscribed to its channel; a waiter that comes later finds the store once the flight
 * ends, as it would if it came after the flight), but an error for everyone (confirmedError),
 * and its record goes once the end is written and every reader that took it has finished.
 *
 * Memory: each process holds a bounded window (the leader reads the origin no further
 * ahead of the relay than 1 MiB past what it keeps; a follower likewise). Redis holds the
 * whole body of a relayed flight until its last reader finished, at most `ttlMs` after its
 * last write or read.
 *
 * @example
 * const relay = new RedisFlightRelay({ connection, bulk, notifier, prefix, leaseKey: (k) => leases.leaseKey(k), ttlMs: 15_000 });
 */
export class RedisFlightRelay implements FlightRelay {
  private readonly prefix: string;
  /** Body entries a record holds at most (windowPieces of the options' windowBytes). */
  private readonly window: number;
  /** Offers that may run after their writer gave up on them, withdrawn once Redis answers. */
  private readonly redo = new Redo(100);
  constructor(private readonly o: RedisFlightRelayOptions) {
    this.window = windowPieces(o.windowBytes);
    this.prefix = checkPrefix(o.prefix);
  }

  async offer(key: string, token: number, answer: RelayedAnswer): Promise<string | undefined> {
    const id = randomUUID();
    const ref = `${token} ${id}`;
    try {
      // Nobody to copy it for (a Cluster cannot tell: undefined), unless it is an error for everyone (confirmedError).
      if (!confirmedError(answer) && (await this.o.notifier.othersWaiting(key)) === false) {
        if (answer.kind === "stream") {
          await answer.body.cancel().catch(() => undefined);
          await this.mark(key, token, liveFeed(answer) ? ALONE : STREAMING);
        }
        return undefined;
      }
      const stream = this.streamKey(key, id);
      await this.o.connection.run("relay offer", (client) =>
        OFFER.run(
          client,
          [this.pointerKey(key), stream, withdrawnKey(stream)],
          [token, id, headOf(answer), this.o.ttlMs],
        ),
      );
    } catch (error) {
      this.redo.undoIfRan(error, () => this.withdraw(key, id, ref));
      if (answer.kind === "stream") await answer.body.cancel(error).catch(() => undefined);
      throw error;
    }
    let seq = 2;
    const offeredAt = Date.now();
    const writer = new PieceWriter(
      (field, value) => this.append(key, id, ref, seq++, field, value),
      () => this.room(key, id, { token, ref, seq, graceOver: Date.now() - offeredAt > TAKE_GRACE_MS }),
    );
    if (answer.kind === "stream") {
      // Followers read the head now and the pieces as they come.
      void writer.pump(answer.body).then(() => this.finish(key, id, ref, undefined));
      return `${RELAYED}${ref}`;
    }
    const body = answer.response.body;
    for (let at = 0; at < body.byteLength; at += PIECE_BYTES) {
      if (!(await writer.append("b", body.subarray(at, at + PIECE_BYTES)))) return undefined;
    }
    if (!(await writer.append("e", "complete"))) return undefined;
    return `${RELAYED}${ref}`;
  }

  async take(key: string, message: string): Promise<RelayedAnswer | undefined> {
    const match = /^(\d+) ([0-9a-f-]{36})$/.exec(message.slice(RELAYED.length));
    if (!message.startsWith(RELAYED) || !match) return undefined;
    const id = match[2]!;
    const stream = this.streamKey(key, id);
    const raw = await this.o.connection.run("relay head", (client) =>
      TAKE.run(client, [stream, readersKey(stream)], [this.o.ttlMs]),
    );
    const head = parseHead(raw);
    const reader = randomUUID();
    const done = () => void this.finish(key, id, message.slice(RELAYED.length), reader);
    if (!head) {
      if (typeof raw === "string") done();
      return undefined;
    }
    if (head.kind === "stream") {
      return {
        kind: "stream",
        head: decodeEntryMeta(head.head),
        body: this.follow(stream, reader, done),
        ...(head.bytes !== undefined ? { bytes: head.bytes } : {}),
        size: head.size,
        fwdStatus: head.fwdStatus,
      };
    }
    // An error answer is announced once whole: read it at once.
    const pieces: Uint8Array[] = [];
    const body = this.follow(stream, reader, done).getReader();
    try {
      for (;;) {
        const { done, value } = await body.read();
        if (done) break;
        pieces.push(value);
      }
    } catch {
      return undefined;
    }
    const { status, headers, code, message: text } = head;
    return {
      kind: "failed",
      code,
      message: text,
      ...(head.fwdStatus !== undefined ? { fwdStatus: head.fwdStatus } : {}),
      ...(head.retryAfterMs !== undefined ? { retryAfterMs: head.retryAfterMs } : {}),
      ...(typeof head.askedBy === "string" ? { askedBy: head.askedBy } : {}),
      response: { status, headers, body: Buffer.concat(pieces) },
    };
  }

  /**
   * The announcement of the answer offered by the flight that holds `key`'s lease now, or by
   * the last one if nobody holds it: what a waiter that subscribed late would have heard.
   */
  async current(key: string): Promise<string | undefined> {
    const [pointer, lease] = await this.o.connection.run("relay pointer", (client) =>
      client.mget(this.pointerKey(key), this.o.leaseKey(key)),
    );
    if (!pointer) return undefined;
    const [token, id] = pointer.split(" ");
    if (lease !== null && lease !== token) return undefined;
    // A mark says something only while its flight streams: once the lease is free, ask again.
    if (id === STREAMING || id === ALONE) return lease === token ? id : undefined;
    return `${RELAYED}${pointer}`;
  }

  /**
   * Marks `key`'s flight (lease `token`) as streaming a body nobody else reads. A late waiter
   * waits for the end of a download ({@link STREAMING}: never two origin requests for the
   * key at once), but asks on its own beside a live event stream ({@link ALONE}), which ends
   * only when its page closes: waiting for it kept that visitor's page blank for minutes.
   */
  private async mark(key: string, token: number, what: typeof STREAMING | typeof ALONE): Promise<void> {
    await this.o.connection
      .run("relay mark", (client) => client.set(this.pointerKey(key), `${token} ${what}`, "PX", this.o.markTtlMs))
      .catch(() => undefined);
    // A waiter that subscribed after nobody was found waiting, and looked before the mark was
    // set, found no pointer: it would wait for the end of a stream that never ends (a CI run
    // saw a late member answer nothing for 5 s). Told now, it asks on its own. A download's
    // waiter rightly waits for its end, which is announced.
    if (what === ALONE) await this.o.notifier.publish(key, ALONE).catch(() => 0);
  }

  /** Takes back an offer that may have run after its writer gave up on it (WITHDRAW). */
  private async withdraw(key: string, id: string, ref: string): Promise<void> {
    const stream = this.streamKey(key, id);
    const keys = [this.pointerKey(key), stream, readersKey(stream), placesKey(stream), withdrawnKey(stream)];
    await this.o.connection.run("relay withdraw", (client) => WITHDRAW.run(client, keys, [ref, this.o.ttlMs]));
  }

  /** Appends entry `0-<seq>`; false once the record is gone. */
  private async append(
    key: string,
    id: string,
    ref: string,
    seq: number,
    field: string,
    value: Uint8Array | string,
  ): Promise<boolean> {
    const data = typeof value === "string" ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const written = await this.o.bulk.run("relay append", (client) =>
      APPEND.run(client, [this.streamKey(key, id), this.pointerKey(key)], [`0-${seq}`, field, data, this.o.ttlMs, ref]),
    );
    return written === 1;
  }

  /** Whether piece `seq` may be written within the window (ROOM); the pointer turns to a mark once the record's start is dropped. */
  private async room(
    key: string,
    id: string,
    at: { token: number; ref: string; seq: number; graceOver: boolean },
  ): Promise<Room> {
    const stream = this.streamKey(key, id);
    const keys = [stream, readersKey(stream), placesKey(stream), this.pointerKey(key)];
    const mark = `${at.token} ${STREAMING}`;
    const args = [at.seq, this.window, at.graceOver ? 1 : 0, at.ref, mark, this.o.markTtlMs, this.o.stallMs];
    const room = await this.o.bulk.run("relay room", (client) => ROOM.run(client, keys, args));
    return room === 1 ? "yes" : room === 2 ? "full" : "gone";
  }

  /** A body read from the record as it grows (relay-body.ts); `done` once, when its reading ends however. */
  private follow(stream: string, reader: string, done: () => void): ReadableStream<Uint8Array> {
    let listener: (() => void) | undefined;
    const watch = this.o.notifier.watch(stream.slice(this.prefix.length), () => listener?.());
    const onAppend = (wake: () => void) => void (listener = wake);
    let finished = false;
    const stop = () => {
      watch.stop();
      if (!finished) done();
      finished = true;
    };
    const place = (next: number, read: boolean) =>
      this.o.bulk.run("relay place", (client) =>
        PLACE.run(client, [stream, placesKey(stream)], [next, reader, this.o.ttlMs, read ? 1 : 0]),
      );
    return followPieces({ bulk: this.o.bulk, place, watch: { ...watch, stop }, onAppend, stream });
  }

  /** A reader (its id) finished the record, or its writer (undefined) wrote the end: frees it once both hold (FINISH). */
  private async finish(key: string, id: string, ref: string, reader: string | undefined): Promise<void> {
    const stream = this.streamKey(key, id);
    const keys = [stream, readersKey(stream), this.pointerKey(key), placesKey(stream)];
    await this.o.bulk
      .run("relay finish", (client) => FINISH.run(client, keys, [reader ? 1 : 0, ref, reader ?? ""]))
      .catch(() => 0);
  }

  private pointerKey(key: string): string {
    return slotKey(this.prefix, "relay", key);
  }

  private streamKey(key: string, id: string): string {
    return `${slotKey(this.prefix, "relay", key)}:${id}`;
  }
}
