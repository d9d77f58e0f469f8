import { afterEach, describe, expect, it } from "vitest";
import { redisTestConnection, startRedisServer } from "../../../test/node/redis-server.ts";
import { RedisConnection } from "./connection.ts";
import { RedisNotifier } from "./notifier.ts";

const redis = redisTestConnection();
const open: (RedisNotifier | RedisConnection)[] = [];

afterEach(async () => {
  for (const thing of open.splice(0)) await thing.close();
});

/** Two notifiers on separate connections, as in two processes of a fleet. */
async function twoProcesses() {
  const prefix = redis.prefix();
  const make = async () => {
    const connection = new RedisConnection({ url: redis.server.url });
    const notifier = new RedisNotifier({ connection, prefix });
    open.push(notifier, connection);
    await connection.ready();
    await notifier.ready();
    return notifier;
  };
  return { prefix, a: await make(), b: await make() };
}

/** Channels the server holds subscriptions for under `prefix`. */
async function serverChannels(prefix: string): Promise<string[]> {
  return (await redis.connection.client.pubsub("CHANNELS", `${prefix}*`)) as string[];
}

describe("RedisNotifier", () => {
  it("wakes a waiter in one process on a publish from another", async () => {
    const { a, b } = await twoProcesses();
    const waiting = a.listen("page", 5_000);
    expect(await waiting.subscribed).toBe(true);
    expect(await b.publish("page", "filled:42")).toBe(1);
    expect(await waiting.message).toBe("filled:42");
  });

  it("wakes every waiter on the key through one subscription, and no waiter on another key", async () => {
    const { prefix, a, b } = await twoProcesses();
    const first = a.listen("page", 5_000);
    const second = a.listen("page", 5_000);
    const elsewhere = a.listen("other", 100);
    await Promise.all([first.subscribed, second.subscribed, elsewhere.subscribed]);
    expect((await serverChannels(prefix)).sort()).toEqual([`${prefix}filled:other`, `${prefix}filled:page`]);
    expect(await b.publish("page", "done")).toBe(1);
    expect(await Promise.all([first.message, second.message])).toEqual(["done", "done"]);
    expect(await elsewhere.message).toBeUndefined();
  });

  it("resolves undefined on timeout", async () => {
    const { a } = await twoProcesses();
    const started = performance.now();
    expect(await a.waitFor("quiet", 50)).toBeUndefined();
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
  });

  it("resolves undefined when the signal aborts, or is already aborted", async () => {
    const { a } = await twoProcesses();
    const controller = new AbortController();
    const waiting = a.waitFor("k", 5_000, controller.signal);
    controller.abort();
    expect(await waiting).toBeUndefined();
    expect(await a.waitFor("k", 5_000, AbortSignal.abort())).toBeUndefined();
    expect(a.activeChannels).toBe(0);
  });

  it("leaks no subscription once every waiter is done (message, timeout, abort)", async () => {
    const { prefix, a, b } = await twoProcesses();
    const woken = a.listen("woken", 5_000);
    const timedOut = a.listen("timed-out", 30);
    const controller = new AbortController();
    const aborted = a.listen("aborted", 5_000, controller.signal);
    await Promise.all([woken.subscribed, timedOut.subscribed, aborted.subscribed]);
    expect(await serverChannels(prefix)).toHaveLength(3);
    await b.publish("woken", "x");
    controller.abort();
    await Promise.all([woken.message, timedOut.message, aborted.message]);
    expect(a.activeChannels).toBe(0);
    await expect.poll(() => serverChannels(prefix), { timeout: 1_000, interval: 10 }).toEqual([]);
  });

  it("subscribes again when a new waiter arrives right after the last one left", async () => {
    const { a, b } = await twoProcesses();
    const first = a.listen("k", 5_000);
    await first.subscribed;
    await b.publish("k", "one");
    expect(await first.message).toBe("one");
    // UNSUBSCRIBE for the first is still in flight; the new SUBSCRIBE follows it in order.
    const second = a.listen("k", 5_000);
    expect(await second.subscribed).toBe(true);
    await b.publish("k", "two");
    expect(await second.message).toBe("two");
  });

  it("resolves pending waiters with undefined on close", async () => {
    const { a } = await twoProcesses();
    const waiting = a.waitFor("k", 5_000);
    await a.close();
    expect(await waiting).toBeUndefined();
  });

  it("wakes its waiters when the subscriber drops (news published meanwhile is lost), and resubscribes its watchers after", async () => {
    const outage = await startRedisServer();
    const connection = new RedisConnection({ url: outage.url });
    const publisher = new RedisConnection({ url: outage.url });
    const notifier = new RedisNotifier({ connection, prefix: "re:" });
    const other = new RedisNotifier({ connection: publisher, prefix: "re:" });
    open.push(notifier, other, connection, publisher);
    await Promise.all([connection.ready(), publisher.ready(), notifier.ready()]);
    const waiting = notifier.listen("k", 10_000);
    const heard: (string | undefined)[] = [];
    const watching = notifier.watch("news", (message) => heard.push(message));
    expect(await waiting.subscribed).toBe(true);
    expect(await watching.subscribed).toBe(true);

    const dropped = performance.now();
    await outage.kill();
    // Woken at the drop, not after its 10 s: its caller looks again (and, without Redis, serves on its own).
    expect(await waiting.message).toBeUndefined();
    expect(performance.now() - dropped).toBeLessThan(2_000);
    await outage.restart();
    await Promise.all([notifier.ready(3_000), publisher.ready(3_000)]);
    await expect.poll(() => other.broadcast("news", "after restart"), { timeout: 1_000, interval: 10 }).toBe(1);
    await expect.poll(() => heard, { timeout: 1_000, interval: 10 }).toContain("after restart");
    watching.stop();
    await outage.stop();
  });
});
