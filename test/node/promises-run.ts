import { parseConfig, type Config } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";
import type { RunRecord, Window } from "./promises-checks.ts";
import { startPromisesOrigin, type OriginCall } from "./promises-origin.ts";
import {
  planRequest,
  purge,
  seeded,
  sendPlanned,
  type ClientRecord,
  type ClientWatch,
  type PlannedRequest,
  type PurgeRecord,
} from "./promises-traffic.ts";

export const TOKEN = "promises-check-admin-token";
export const logger = jsonLogger("silent");

export interface RunShape {
  /** Bursts sent, each of 200 to 500 requests at once. */
  waves: number;
}

/** What a run sends its traffic to: one process, or a fleet (promises-fleet.ts). */
export interface Deployment {
  /** The base URL the next request goes to (a fleet deals them over its live members). */
  target(): string;
  /** A fault of the deployment's own in burst `wave`, started as the burst is sent; awaited before the next. */
  duringWave?(wave: number): Promise<void>;
  /** When the deployment worked as documented for its degraded mode (a fleet without Redis). */
  degraded?(): Window[];
  /** When the shared copies were lost (a Redis emptied): every stored copy may be gone then. */
  losses?(): number[];
  /** What happened, for a failure's message. */
  story?(): string[];
  /** How each part stands once the run's clients settled (a fleet: each member's mode and origin guard). */
  look?(): Promise<string[]>;
  close(): Promise<void>;
}

export type Deploy = (config: Config) => Promise<Deployment>;

/** One Node process over its in-memory store. */
export const oneProcess: Deploy = async (config) => {
  const server = await startServer({ stack: localStack({ config, logger }), logger, port: 0, fastHits: true });
  return { target: () => server.url, close: () => server.close() };
};

/**
 * One seeded run on the real clock: bursts of seeded traffic with purges between them and,
 * in some seeds, a second when the origin is down (answers 503 or resets every connection).
 * The seed picks the cap (2 to 8), the traffic and the outage; `deploy` what serves it.
 */
export async function runSeed(
  seed: number,
  shape: RunShape = { waves: 5 },
  deploy: Deploy = oneProcess,
): Promise<RunRecord> {
  const rand = seeded(seed);
  const cap = 2 + Math.floor(rand() * 7);
  const knobs = configKnobs(rand);
  const origin = await startPromisesOrigin(seed);
  const config = parseConfig({
    origin: {
      url: origin.url,
      maxConcurrency: cap,
      timeoutMs: 600,
      queueTimeoutMs: 1_500,
      streamIdleTimeoutMs: 1_000,
      ordinaryRequestHeaders: ["x-client-id"],
      ...knobs.origin,
    },
    breaker: { probeIntervalMs: 500, backoffBaseMs: 200, backoffMaxMs: 1_000, ...knobs.breaker },
    defaults: knobs.defaults,
    admin: { token: TOKEN },
    fleet: { minProcesses: 3 },
  });
  const deployment = await deploy(config);
  const watch = new Watch();
  const clients: Promise<ClientRecord>[] = [];
  const purges: Promise<PurgeRecord>[] = [];
  const outage = rand() < 0.5 ? (rand() < 0.5 ? "503" : "reset") : undefined;
  let standIn: StandIn | undefined;
  try {
    for (let wave = 0; wave < shape.waves; wave++) {
      if (outage !== undefined && wave === 2) {
        // The outage surely meets a stored copy: the stand-in, stored once every purge sent
        // before had its answer, is asked for first thing, through the process that stored it,
        // and answered before this burst's purge is sent (a hard purge ends a stand-in).
        standIn = await storeStandIn(deployment.target(), clients, purges, watch);
        origin.setDown(outage);
        clients.push((standIn.served = sendPlanned(standIn.base, standInPlan("served"), watch)));
        await Promise.race([standIn.served, sleep(Math.max(0, standIn.until - performance.now()) + QUIET_MS)]);
      }
      if (wave === 3) origin.setDown("up");
      const fault = deployment.duringWave?.(wave);
      const size = 200 + Math.floor(rand() * 300);
      for (let i = 0; i < size; i++)
        clients.push(sendPlanned(deployment.target(), planRequest(rand, `c${wave}-${i}`), watch));
      if (rand() < 0.6) purges.push(purge(deployment.target(), TOKEN, rand));
      await Promise.all([fault, new Promise((resolve) => setTimeout(resolve, 300 + rand() * 600))]);
    }
    origin.setDown("up");
    const lost: PurgeRecord[] = (deployment.losses?.() ?? []).map((at) => ({
      at,
      paths: "all",
      soft: false,
      status: 0,
    }));
    return {
      cap,
      ...knobs.judged,
      peak: origin.peak(),
      atPeak: origin.atPeak(),
      calls: origin.calls,
      clients: await watch.settle(clients, () => lastMove(origin.calls)),
      looks: await (deployment.look?.() ?? []),
      // A Redis that lost its data took every shared copy: as a hard purge of everything would.
      purges: [...(await Promise.all(purges)), ...lost],
      ...(standIn?.served !== undefined ? { standIn: await standIn.served } : {}),
      degraded: deployment.degraded?.() ?? [],
      story: deployment.story?.() ?? [],
    };
  } finally {
    watch.stop();
    await Promise.all([...clients, ...purges]).catch(() => undefined);
    await deployment.close();
    await origin.close();
  }
}

/**
 * The options a seed turns on: a breaker that opens as by default or hardly ever (so the
 * queue, not the breaker, meets the traffic), a short queue, no read-ahead, negative caching,
 * refresh-ahead and revalidation on a client's `no-cache`, each in some seeds.
 */
function configKnobs(rand: () => number) {
  const lenient = rand() < 0.5;
  const refreshAhead = rand() < 0.3 ? 0.2 : 0;
  const honorRequestNoCache = rand() < 0.3;
  return {
    origin: {
      ...(rand() < 0.3 ? { maxQueue: 20 } : {}),
      ...(rand() < 0.3 ? { readAheadBytes: 0 } : {}),
      ...(rand() < 0.2 ? { errorTtlMs: 500 } : {}),
    },
    breaker: lenient ? { minFailingKeys: 1000, failureThreshold: 1000 } : {},
    defaults: { refreshAhead, honorRequestNoCache },
    judged: { refreshAhead, honorRequestNoCache },
  };
}

/** The run's own copy for the outage to meet: `base` is the process that stored it. */
interface StandIn {
  base: string;
  /** The end of the stand-in's time ({@link STAND_IN_MAX_MS}), its answer's included. */
  until: number;
  served?: Promise<ClientRecord>;
}

/** A GET of `/standin/0` (promises-origin.ts: stale once stored, within stale-if-error). */
function standInPlan(id: string): PlannedRequest {
  const headers = { "x-client-id": `standin-${id}`, "accept-language": "en" };
  return {
    id: `standin-${id}`,
    method: "GET",
    path: "/standin/0",
    headers,
    upload: 0,
    slowUpload: false,
    hangupMs: 0,
    webSocket: false,
  };
}

/**
 * Stores the stand-in copy through `base` once the purges sent so far had their answers: asked
 * again while the busy origin's queue turns it away (after a Redis restart the fleet's queue
 * stays full for seconds), for {@link STAND_IN_MAX_MS} at most. Its clients are judged with
 * the others.
 */
async function storeStandIn(
  base: string,
  clients: Promise<ClientRecord>[],
  purges: Promise<PurgeRecord>[],
  watch: ClientWatch,
): Promise<StandIn> {
  await Promise.all(purges);
  // Bounded: a herdless that never answers fails the run's checks, not the test's timeout.
  const until = performance.now() + STAND_IN_MAX_MS;
  for (let attempt = 0; performance.now() < until; attempt++) {
    const sent = sendPlanned(base, standInPlan(`stored${attempt}`), watch);
    clients.push(sent);
    const got = await Promise.race([sent, sleep(until - performance.now())]);
    if (got === undefined) break;
    if (got.status === 200 && String(got.responseHeaders?.["cache-status"]).includes("stored")) break;
    await sleep(100); // a refusal at once (an open breaker) is not asked again in a busy loop
  }
  return { base, until };
}

/**
 * How long nothing may move, with clients still waiting, before they count as never answered:
 * above every bound herdless keeps in these runs (`origin.queueTimeoutMs` 1.5 s,
 * `origin.timeoutMs` 0.6 s, `origin.streamIdleTimeoutMs` 1 s, the breaker's 1 s at most), so a
 * request herdless still works on brings an answer, a piece of one or an origin request sooner.
 * Judged by what happens, not by a deadline: on a loaded machine every answer comes later,
 * and a client answered after 12 s is answered all the same.
 */
const QUIET_MS = 2_000;
/**
 * The longest the run waits for its clients after its last burst, however busy it stays, and
 * for the stand-in's store and answer: on a loaded machine the run ends, and says what it saw,
 * within about 40 s (a deployment's close waits up to 10 s more on requests given up on),
 * inside the tests' 60 s; unloaded it takes 4 to 6 s.
 */
const SETTLE_MAX_MS = 12_000;
const STAND_IN_MAX_MS = 8_000;

/** When the origin last saw a request start or end. */
function lastMove(calls: OriginCall[]): number {
  let last = 0;
  for (const call of calls) last = Math.max(last, call.start, call.end ?? 0);
  return last;
}

/** The run's {@link ClientWatch}: when a client last heard anything, and giving up on the rest. */
class Watch implements ClientWatch {
  private last = performance.now();
  private release = () => undefined as void;
  readonly giveUp = new Promise<void>((resolve) => (this.release = resolve));

  moved = (): void => void (this.last = performance.now());

  /**
   * Every client's record once answered, or once nothing moved for {@link QUIET_MS}, neither an
   * answer nor the origin (`originMoved`), seen twice across a turn of the event loop (a loop
   * that was starved runs its timers before it reads the answers that arrived meanwhile).
   */
  async settle(clients: Promise<ClientRecord>[], originMoved: () => number): Promise<ClientRecord[]> {
    const all = Promise.all(clients);
    let answered = false;
    void all.then(() => (answered = true));
    const started = performance.now();
    const stillQuiet = () => performance.now() - Math.max(this.last, originMoved()) > QUIET_MS;
    while (!answered && performance.now() - started < SETTLE_MAX_MS) {
      await sleep(100);
      if (!stillQuiet()) continue;
      await new Promise((resolve) => setImmediate(resolve));
      await sleep(20);
      if (stillQuiet()) break;
    }
    this.stop();
    return all;
  }

  stop(): void {
    this.release();
  }
}

const sleep = (ms: number) => new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms));
