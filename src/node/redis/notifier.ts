import type { RedisConnection } from "./connection.ts";

export interface RedisNotifierOptions {
  /** Publishes go through this connection; the subscriber is a duplicate of it. */
  connection: RedisConnection;
  /** Namespace shared with the store and leases of the same deployment. */
  prefix?: string;
}

/** A registered waiter, split so a caller can close the race between "check" and "wait". */
export interface Waiting {
  /** True once Redis confirmed the subscription; false if it could not be made (Redis down). */
  subscribed: Promise<boolean>;
  /** The next message for the key; undefined on timeout, abort or close. Never rejects. */
  message: Promise<string | undefined>;
}

interface Waiter {
  finish(message: string | undefined): void;
  /** A {@link RedisNotifier.listen} waiter, woken when the subscriber drops; a watcher stays. */
  oneShot?: boolean;
}

interface Channel {
  waiters: Set<Waiter>;
  subscribed: Promise<boolean>;
}

/**
 * Wakes waiters in other processes when a key is filled. One subscriber connection per
 * notifier (one notifier per process), and one channel per key, subscribed while someone
 * waits on it and unsubscribed when the last waiter leaves.
 *
 * Why a channel per key rather than one shared channel with the key in the payload: Redis
 * then delivers a fill only to the processes waiting for that key. With a shared channel
 * every process would receive every fill of the fleet and discard nearly all of them, so
 * pub/sub traffic would grow with processes × fill rate instead of with actual waiters.
 * The price is one SUBSCRIBE and one UNSUBSCRIBE per waited-on key, on a connection that
 * does nothing else.
 *
 * A message published before the subscription is confirmed is not seen. Callers that must
 * not miss a fill register first, await `subscribed`, re-check the store, then await
 * `message` (see {@link listen}); a timeout is the backstop either way.
 *
 * @example
 * const w = notifier.listen(key, 5_000, signal);
 * await w.subscribed;
 * const entry = (await store.get(key)) ?? ((await w.message) !== undefined ? await store.get(key) : undefined);
 * // elsewhere, after storing: await notifier.publish(key, "filled");
 */
export class RedisNotifier {
  private readonly publisher: RedisConnection;
  private readonly subscriber: RedisConnection;
  private readonly prefix: string;
  private readonly channels = new Map<string, Channel>();

  constructor(options: RedisNotifierOptions) {
    this.publisher = options.connection;
    this.subscriber = options.connection.duplicate({ autoResubscribe: false, loadsScripts: false });
    this.prefix = options.prefix ?? "herdless:";
    this.subscriber.client.on("message", (channel: string, message: string) => this.deliver(channel, message));
    // After an outage, subscribe to exactly the channels someone still waits on: ioredis's
    // own record would also bring back channels whose UNSUBSCRIBE was lost with the socket.
    this.subscriber.onHealthChange((healthy) => {
      if (!healthy) return this.wakeWaiters();
      for (const [name, channel] of this.channels) channel.subscribed = this.subscribe(name);
    });
    // A Redis that stalls drops the commands' connection (its timeout), not the subscriber's,
    // which sends nothing: the news of the fill waited on (sent on the first) is lost all the same.
    this.publisher.onHealthChange((healthy) => void (healthy || this.wakeWaiters()));
  }

  /** Resolves once the subscriber connection is up. */
  ready(timeoutMs?: number): Promise<void> {
    return this.subscriber.ready(timeoutMs);
  }

  /** Whether the subscriber connection is up; while down, new waiters only time out. */
  get healthy(): boolean {
    return this.subscriber.healthy;
  }

  /** Channels this process is subscribed to (or subscribing); 0 when nobody waits. */
  get activeChannels(): number {
    return this.channels.size;
  }

  /** Announces `message` to every process waiting on `key`; resolves to how many connections heard it. */
  publish(key: string, message: string): Promise<number> {
    return this.publisher.run("publish", (client) => client.publish(this.channelName(key), message));
  }

  /** Announces `message` on `channel` (a name of the caller's, under the prefix), as {@link watch} hears it. */
  broadcast(channel: string, message: string): Promise<number> {
    return this.publisher.run("publish", (client) => client.publish(`${this.prefix}${channel}`, message));
  }

  /**
   * Whether a process other than this one waits on `key` (is subscribed to its channel), or
   * undefined when Redis cannot say: a Cluster counts only the subscribers of the node asked.
   */
  async othersWaiting(key: string): Promise<boolean | undefined> {
    if (this.publisher.target.kind === "cluster") return undefined;
    const name = this.channelName(key);
    const reply = await this.publisher.run("pubsub numsub", (client) => client.pubsub("NUMSUB", name));
    const subscribers = Number(Array.isArray(reply) ? reply[1] : 0);
    return subscribers - (this.channels.has(name) ? 1 : 0) > 0;
  }

  /** The next message for `key`, or undefined after `timeoutMs` or when `signal` aborts. */
  waitFor(key: string, timeoutMs: number, signal?: AbortSignal): Promise<string | undefined> {
    return this.listen(key, timeoutMs, signal).message;
  }

  /** {@link waitFor} that also tells when the subscription is in place. */
  listen(key: string, timeoutMs: number, signal?: AbortSignal): Waiting {
    const name = this.channelName(key);
    let channel = this.channels.get(name);
    if (!channel) {
      channel = { waiters: new Set(), subscribed: this.subscribe(name) };
      this.channels.set(name, channel);
    }
    const waiters = channel.waiters;
    let waiter: Waiter | undefined;
    const message = new Promise<string | undefined>((resolve) => {
      let done = false;
      const onAbort = () => waiter?.finish(undefined);
      const timer = setTimeout(onAbort, timeoutMs);
      waiter = {
        oneShot: true,
        finish: (value) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          this.leave(name, waiters, waiter!);
          resolve(value);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
    waiters.add(waiter!);
    if (signal?.aborted) waiter!.finish(undefined);
    return { subscribed: channel.subscribed, message };
  }

  /**
   * Hears every message on `channel` (a name of the caller's, under the prefix) until `stop`;
   * `onMessage(undefined)` when the notifier closes. For a reader following a stream of
   * messages, where {@link listen}'s one-shot waiters would subscribe anew for each.
   */
  watch(
    channel: string,
    onMessage: (message: string | undefined) => void,
  ): { subscribed: Promise<boolean>; stop(): void } {
    const name = `${this.prefix}${channel}`;
    let record = this.channels.get(name);
    if (!record) {
      record = { waiters: new Set(), subscribed: this.subscribe(name) };
      this.channels.set(name, record);
    }
    const waiters = record.waiters;
    const waiter: Waiter = { finish: onMessage };
    waiters.add(waiter);
    return { subscribed: record.subscribed, stop: () => this.leave(name, waiters, waiter) };
  }

  /** Resolves every pending waiter with undefined and closes the subscriber connection. */
  async close(): Promise<void> {
    for (const channel of [...this.channels.values()]) {
      for (const waiter of [...channel.waiters]) waiter.finish(undefined);
    }
    await this.subscriber.close();
  }

  /**
   * The subscriber (or the commands' connection) dropped: a message published from now until it is back is never heard, and
   * a restarted Redis has lost the lease the waiter waits out. Each waiter is told at once
   * (undefined) and looks again, as on a timeout: without Redis its caller is served as
   * without Redis (local single-flight). Before, it waited out its whole timeout
   * (`coordinator.lockLeaseMs`) for news the outage had swallowed: a client of a member whose
   * fill was in another member when Redis restarted went unanswered for 15 s.
   */
  private wakeWaiters(): void {
    for (const channel of [...this.channels.values()])
      for (const waiter of [...channel.waiters]) if (waiter.oneShot) waiter.finish(undefined);
  }

  private channelName(key: string): string {
    return `${this.prefix}filled:${key}`;
  }

  private deliver(name: string, message: string): void {
    const channel = this.channels.get(name);
    if (!channel) return;
    for (const waiter of [...channel.waiters]) waiter.finish(message);
  }

  private leave(name: string, waiters: Set<Waiter>, waiter: Waiter): void {
    waiters.delete(waiter);
    // Only the current record for this channel may unsubscribe it: a newer one (the last
    // waiter left and a new one arrived) owns a fresh SUBSCRIBE, which Redis applies after
    // this UNSUBSCRIBE because both travel on the same connection in order.
    if (waiters.size > 0 || this.channels.get(name)?.waiters !== waiters) return;
    this.channels.delete(name);
    if (this.subscriber.healthy) this.subscriber.client.unsubscribe(name).catch(() => undefined);
  }

  private subscribe(name: string): Promise<boolean> {
    return this.subscriber.client.subscribe(name).then(
      () => true,
      () => false,
    );
  }
}
