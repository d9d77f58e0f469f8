import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack } from "../../src/node/fleet-stack.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer, type RunningServer } from "../../src/node/server.ts";
import { startRedisServer, type RedisServer } from "./redis-server.ts";
import { send } from "./deployment.ts";

const logger = jsonLogger("silent");
const PREFIX = "herdless:cold-error:";
let redis: RedisServer;
let origin: Server;
let members: RunningServer[] = [];
const asked = new Map<string, number>();
let down = false;
/** While set, the origin keeps its answers here until they are sent by the test. */
let held: (() => void)[] | undefined;

beforeAll(async () => {
  redis = await startRedisServer();
  // Every answer carries max-age (a global middleware); the application crashes on one language.
  origin = createServer((req, res) => {
    asked.set(req.url ?? "", (asked.get(req.url ?? "") ?? 0) + 1);
    req.resume();
    const status = down || req.headers["accept-language"] === "xx" ? 500 : 200;
    const answer = () => {
      // Under /fleeting the errors carry no lifetime: relayed to the waiters in other members, never stored.
      const fleeting = status !== 200 && req.url?.startsWith("/fleeting");
      res.writeHead(status, { ...(fleeting ? {} : { "cache-control": "max-age=60" }), "content-type": "text/plain" });
      res.end(status === 200 ? `page ${req.url}` : `error ${status}`);
    };
    if (held) held.push(answer);
    else answer();
  });
  await new Promise<void>((resolve) => origin.listen(0, "127.0.0.1", resolve));
  const config = parseConfig({ origin: { url: `http://127.0.0.1:${(origin.address() as AddressInfo).port}` } });
  for (let i = 0; i < 2; i++) {
    const stack = await redisStack({ config, logger, redisUrl: redis.url, prefix: PREFIX });
    members.push(await startServer({ stack, logger, port: 0 }));
  }
});

afterAll(async () => {
  for (const member of members) await member.close();
  members = [];
  await redis.stop();
  await new Promise((resolve) => origin.close(resolve));
});

const browser = (agent: string, extra: Record<string, string> = {}) => ({
  headers: {
    "user-agent": `Mozilla/5.0 (X11; Linux x86_64) ${agent}`,
    accept: "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
    "accept-language": "en-US,en;q=0.9",
    ...extra,
  },
});

describe("an error stored on a cold key answers only requests like its own (fleet)", () => {
  it("CPDoS: the app's 500 to an attacker's `Accept-Language: xx`, marked max-age, is the attacker's alone on every member; a 500 the origin gives everyone is stored once two different requests got it", async () => {
    const [a, b] = members.map((member) => member.url) as [string, string];
    const attacker = browser("Firefox/133.0", { "accept-language": "xx" });
    expect((await send(a, "/home", attacker)).status).toBe(500);
    const again = await send(a, "/home", attacker);
    expect([again.status, again.cacheStatus]).toEqual([500, expect.stringMatching(/hit/)]);
    for (const base of [b, a]) {
      const victim = await send(base, "/home", browser("Chrome/131.0"));
      expect([victim.status, victim.body]).toEqual([200, "page /home"]);
    }
    expect(asked.get("/home")).toBe(2);
    // A real failure: the first member's 500 is unconfirmed; the second member's, to another request, confirms it.
    down = true;
    expect((await send(a, "/down", browser("Chrome/131.0"))).status).toBe(500);
    expect((await send(b, "/down", browser("Safari/605.1.15"))).status).toBe(500);
    const third = await send(a, "/down", browser("Edg/131.0"));
    expect([third.status, third.body]).toEqual([500, "error 500"]);
    expect(asked.get("/down")).toBe(2);
  });

  it("CPDoS by collapsing: the requests waiting on the attacker's fill (a 500 marked max-age, or with no lifetime), on its member and on another, get the page, for 1 origin request more; a real failure collapsed so costs 2 requests and is everyone's", async () => {
    const [a, b] = members.map((member) => member.url) as [string, string];
    down = false;
    const collapsed = async (path: string, first: ReturnType<typeof browser>) => {
      held = [];
      const leader = send(a, path, first);
      await vi.waitFor(() => expect(held).toHaveLength(1));
      const waiters = ["Chrome/131.0", "Safari/605.1.15", "Edg/131.0", "OPR/114.0"].map((agent, i) =>
        send(i % 2 === 0 ? b : a, path, browser(agent)),
      );
      // Real time for ordering only: the waiters reach the leader's fill (its member's flight, the other's lease) while it is held.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const answers = held;
      held = undefined;
      answers.forEach((answer) => answer());
      return { leader: await leader, waiters: await Promise.all(waiters) };
    };
    for (const path of ["/collapse", "/fleeting"]) {
      const attack = await collapsed(path, browser("Firefox/133.0", { "accept-language": "xx" }));
      expect(attack.leader.status).toBe(500);
      for (const victim of attack.waiters) expect([victim.status, victim.body]).toEqual([200, `page ${path}`]);
      expect(asked.get(path)).toBe(2);
      down = true;
      const outage = await collapsed(`${path}-down`, browser("Firefox/133.0"));
      expect(outage.leader.status).toBe(500);
      for (const visitor of outage.waiters) expect([visitor.status, visitor.body]).toEqual([500, "error 500"]);
      // An error without a lifetime leaves nothing behind: a member whose waiters ask after
      // another member's confirmed it asks once more itself (a sick status backs the key off).
      if (path === "/collapse") expect(asked.get(`${path}-down`)).toBe(2);
      else expect(asked.get(`${path}-down`)).toBeLessThanOrEqual(1 + members.length);
      down = false;
    }
  });
});
