import { createConnection } from "node:net";
import { redisStack, type FleetStack } from "../../src/node/fleet-stack.ts";
import type { Logger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import type { Window } from "./promises-checks.ts";
import { logger, type Deploy } from "./promises-run.ts";
import { seeded } from "./promises-traffic.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";

/**
 * A fleet for the randomized check of herdless's promises (promises-fleet.test.ts): three
 * members in this process, each with its own stack, sharing one throwaway redis-server,
 * requests dealt at random over the live ones, and in most seeds a fault of the fleet's own
 * a little after one burst is sent:
 *
 * - `restart`: redis-server killed, back (empty) 0.3 to 1 s later;
 * - `flush`: `FLUSHALL` (Redis loses its data, the connections stay);
 * - `pause`: redis-server stopped (SIGSTOP) for 300 ms, below the 1 s command timeout;
 * - `close`: one member shut down; its clients go to the others from then on.
 */
export type FleetFault = "none" | "restart" | "flush" | "pause" | "close";

const FAULTS: FleetFault[] = ["none", "restart", "flush", "pause", "close"];
/**
 * How long after Redis answers again the fleet may still fill per process (docs/node.md, "When
 * Redis comes back"): every member reconnects within 100 ms, the shared cap is back within
 * 0.41–0.76 s. A fill begun on a member's own while Redis was away and queued for its origin
 * slot past the return (a known limit there: it calls the origin beside the fleet's fill) is
 * told by its waiting requests instead (promises-checks.ts filledOnItsOwn): on a loaded
 * machine it came 2 s after the return, its queue's 1.5 s timers firing late.
 */
const RETURN_MS = 2_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends one command to Redis on a connection of its own (a test's hand on the server). */
function command(port: number, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("error", reject);
    socket.once("connect", () => socket.write(`${line}\r\n`));
    socket.once("data", (data) => {
      socket.destroy();
      resolve(data.toString().trim());
    });
  });
}

/**
 * The fault a seed picks (or the one asked for), in which burst, and how long after it starts;
 * `deal` picks each request's member, `strike` the fault's own numbers: two generators, so the
 * requests go to the same members whenever the fault's steps happen to run.
 */
function plan(seed: number, asked?: FleetFault) {
  const rand = seeded(seed * 7919 + 17);
  const fault = asked ?? FAULTS[Math.floor(rand() * FAULTS.length)]!;
  const wave = 1 + Math.floor(rand() * 3);
  const afterMs = 20 + Math.floor(rand() * 250);
  return { deal: rand, strike: seeded(seed * 7919 + 18), fault, wave, afterMs };
}

export function fleetOf(seed: number, asked?: FleetFault): Deploy {
  return async (config) => {
    const { deal, strike: rand, fault, wave, afterMs } = plan(seed, asked);
    const redis = await startRedisServer();
    const prefix = `promises:${seed}:`;
    const modes = new Modes();
    const stacks = await Promise.all(
      [0, 1, 2].map((i) => redisStack({ config, logger: modes.logger(i), redisUrl: redis.url, prefix })),
    );
    const servers = await Promise.all(stacks.map((stack) => startServer({ stack, logger, port: 0, fastHits: true })));
    const live = [...servers];
    const losses: number[] = [];
    const story: string[] = [
      `fault ${fault} in burst ${wave}, ${afterMs} ms in; members ${servers.map((s, i) => `${i} ${s.url}`).join(", ")}`,
    ];
    const strike = async () => {
      await sleep(afterMs);
      const at = performance.now();
      if (fault === "restart") {
        await redis.kill();
        losses.push(at);
        await sleep(300 + rand() * 700);
        await redis.restart();
      } else if (fault === "flush") {
        story.push(`FLUSHALL: ${await command(redis.port, "FLUSHALL")}`);
        losses.push(at);
      } else if (fault === "pause") {
        redis.pause();
        await sleep(300);
        redis.resume();
      } else if (fault === "close") {
        const gone = live.splice(Math.floor(rand() * live.length), 1)[0]!;
        story.push(`member ${servers.indexOf(gone)} closing`);
        await gone.close();
      }
      story.push(`${fault} from ${Math.round(at)} to ${Math.round(performance.now())}`);
    };
    return {
      target: () => live[Math.floor(deal() * live.length)]!.url,
      duringWave: (n) => (n === wave && fault !== "none" ? strike() : Promise.resolve()),
      degraded: () => modes.windows(servers.map((server) => server.url)),
      losses: () => losses,
      story: () => [...story, ...modes.story],
      look: () => Promise.all(stacks.map((stack, i) => look(stack, servers[i]!, live.includes(servers[i]!)))),
      close: () => closeFleet(servers, redis),
    };
  };
}

/**
 * When each member was cut off from Redis, as it decided it (its log line is written as its
 * connection's health changes): from then until {@link RETURN_MS} after it was back, it served
 * in its documented degraded mode. Read from the members, not from the fault: a Redis paused
 * under load, past the 1 s command timeout, cuts them off as surely as a restart.
 */
class Modes {
  readonly story: string[] = [];
  private readonly open = new Map<number, number>();
  private readonly closed: (Omit<Window, "member"> & { member: number })[] = [];

  logger(member: number): Logger {
    const heard = (msg: string) => {
      const at = performance.now();
      if (msg.startsWith("redis unreachable") && !this.open.has(member)) {
        this.open.set(member, at);
        this.story.push(`member ${member} degraded at ${Math.round(at)}`);
      } else if (msg.startsWith("redis reachable") && this.open.has(member)) {
        this.closed.push({ member, from: this.open.get(member)!, back: at, to: at + RETURN_MS });
        this.open.delete(member);
        this.story.push(`member ${member} on redis at ${Math.round(at)}`);
      }
    };
    return { debug: () => undefined, info: heard, warn: heard, error: () => undefined };
  }

  /** The windows so far, each naming its member by `urls` (the members' base URLs, by index). */
  windows(urls: string[]): Window[] {
    const open = [...this.open].map(([member, from]) => ({ member, from, to: Infinity }));
    return [...this.closed, ...open].map(({ member, ...w }) => ({ ...w, member: urls[member]! }));
  }
}

/** A member as it stands: its mode, and its origin guard's count of calls and waiters. */
async function look(stack: FleetStack, server: RunningServer, live: boolean): Promise<string> {
  if (!live) return `member ${server.url}: shut down`;
  const guard = await Promise.race([stack.guard.snapshot(), sleep(1_000).then(() => "no snapshot within 1 s")]);
  return `member ${server.url}: ${stack.mode()}, guard ${JSON.stringify(guard)}`;
}

async function closeFleet(servers: RunningServer[], redis: RedisServer): Promise<void> {
  await Promise.all(servers.map((server) => server.close()));
  await redis.stop();
}
