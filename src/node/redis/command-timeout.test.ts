import { expect, it } from "vitest";
import { redisTestConnection } from "../../../test/node/redis-server.ts";

/*
 * The command timeout tells "Redis did not answer" from "this process was late to read the
 * answer": a member whose event loop was busy past the timeout (a long synchronous task, a
 * loaded machine) keeps its commands' replies and its connection; a Redis that stops
 * answering is still given up on within the timeout.
 */
const redis = redisTestConnection();

/** Holds the event loop, as a long synchronous task on a loaded machine does. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

it("a reply Redis sent in time is read after the event loop was busy 1.5 s (timeout 1 s): the command succeeds, the connection stays up", async () => {
  const connection = await redis.connect({ commandTimeoutMs: 1_000 });
  const changes: boolean[] = [];
  connection.onHealthChange((healthy) => changes.push(healthy));
  const key = `${redis.prefix()}k`;
  const written = connection.run("set", (client) => client.set(key, "v"));
  const read = connection.run("get", (client) => client.get(key));
  busy(1_500);
  // Before: both rejected "Command timed out", and the connection was dropped as if Redis were gone.
  expect(await Promise.all([written, read])).toEqual(["OK", "v"]);
  expect(connection.healthy).toBe(true);
  expect(changes).toEqual([]);
});

it("a Redis that stops answering (SIGSTOP) is still given up on within the timeout", async () => {
  const connection = await redis.connect({ commandTimeoutMs: 300, maxReconnectDelayMs: 50 });
  redis.server.pause();
  try {
    const started = performance.now();
    await expect(connection.run("get", (client) => client.get("x"))).rejects.toMatchObject({
      code: "COORDINATOR_UNAVAILABLE",
      message: "redis get failed: Command timed out",
    });
    expect(performance.now() - started).toBeLessThan(500);
    expect(connection.healthy).toBe(false);
  } finally {
    redis.server.resume();
  }
  await connection.ready();
  expect(await connection.run("ping", (client) => client.ping())).toBe("PONG");
});
