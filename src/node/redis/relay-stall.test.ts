import { expect, it, onTestFinished } from "vitest";
import { isHerdlessError } from "../../core/errors.ts";
import { redisTestConnection } from "../../../test/node/redis-server.ts";
import { controlledBody, head, readAll } from "../../../test/node/relay-kit.ts";
import { stallingProxy } from "../../../test/node/stalling-proxy.ts";
import { RedisConnection } from "./connection.ts";
import { RedisNotifier } from "./notifier.ts";
import { RedisFlightRelay } from "./relay.ts";

const redis = redisTestConnection();

async function member(connection: RedisConnection, prefix: string) {
  const notifier = new RedisNotifier({ connection, prefix });
  onTestFinished(() => notifier.close());
  await notifier.ready();
  const leaseKey = (key: string) => `${prefix}lease:{${key}}`;
  const bounds = { ttlMs: 3_000, markTtlMs: 60_000, windowBytes: 1 << 20, stallMs: 30_000 };
  const relay = new RedisFlightRelay({ connection, bulk: connection, notifier, prefix, leaseKey, ...bounds });
  return { notifier, relay };
}

it("an offer Redis ran after its writer gave up on it (Redis stalled) is taken back: a late waiter is not handed a body that never comes", async () => {
  const prefix = redis.prefix();
  const proxy = await stallingProxy(redis.server, `relay:{${head.key}}`);
  const leaderConnection = new RedisConnection({ url: proxy.url, commandTimeoutMs: 300, maxReconnectDelayMs: 50 });
  onTestFinished(() => leaderConnection.close());
  await leaderConnection.ready();
  const leader = await member(leaderConnection, prefix);
  const follower = await member(await redis.connect(), prefix);
  const stop = new AbortController();
  onTestFinished(() => stop.abort());
  await follower.notifier.listen(head.key, 60_000, stop.signal).subscribed;
  // The flight holds the key's lease (token 7) and offers its answer: the offer stalls in Redis's socket.
  await redis.connection.client.set(`${prefix}lease:{${head.key}}`, "7");
  const { body } = controlledBody();
  const offered = leader.relay.offer(head.key, 7, { kind: "stream", head, body, size: "unknown", fwdStatus: 200 });
  expect(isHerdlessError(await offered.catch((e: unknown) => e), "COORDINATOR_UNAVAILABLE")).toBe(true);
  await expect.poll(proxy.ran, { timeout: 5_000, interval: 10 }).toBe(true);
  await leaderConnection.ready();

  // A waiter that comes now looks for the flight's answer. Before: it was pointed at the offer
  // that ran, read its head and then nothing, until the record lapsed and its body was cut.
  const late = async () => {
    const pointer = await follower.relay.current(head.key);
    const answer = pointer ? await follower.relay.take(head.key, pointer) : undefined;
    if (answer?.kind === "stream") await readAll(answer.body);
    return answer;
  };
  await new Promise((resolve) => setTimeout(resolve, 300));
  const started = performance.now();
  expect(await late().catch((error: unknown) => `cut: ${String(error)}`)).toBeUndefined();
  expect(performance.now() - started).toBeLessThan(1_000);
});
