import { parseConfig } from "../../src/core/config.ts";
import { jsonLogger } from "../../src/node/logger.ts";
import { startServer } from "../../src/node/server.ts";
import { localStack } from "../../src/node/stack.ts";
import type { RunRecord } from "./promises-checks.ts";
import { startPromisesOrigin } from "./promises-origin.ts";
import { planRequest, purge, seeded, sendPlanned, type ClientRecord, type PurgeRecord } from "./promises-traffic.ts";

const TOKEN = "promises-check-admin-token";

export interface RunShape {
  /** Bursts sent, each of 200 to 500 requests at once. */
  waves: number;
}

/**
 * One seeded run against one Node process on the real clock: bursts of seeded traffic with
 * purges between them and, in some seeds, a second when the origin is down (answers 503 or
 * resets every connection). The seed picks the cap (2 to 8), the traffic and the outage.
 */
export async function runSeed(seed: number, shape: RunShape = { waves: 5 }): Promise<RunRecord> {
  const rand = seeded(seed);
  const cap = 2 + Math.floor(rand() * 7);
  const knobs = configKnobs(rand);
  const origin = await startPromisesOrigin(seed);
  const logger = jsonLogger("silent");
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
  });
  const server = await startServer({ stack: localStack({ config, logger }), logger, port: 0, fastHits: true });
  const clients: Promise<ClientRecord>[] = [];
  const purges: Promise<PurgeRecord>[] = [];
  const outage = rand() < 0.5 ? (rand() < 0.5 ? "503" : "reset") : undefined;
  try {
    for (let wave = 0; wave < shape.waves; wave++) {
      if (outage !== undefined && wave === 2) origin.setDown(outage);
      if (wave === 3) origin.setDown("up");
      const size = 200 + Math.floor(rand() * 300);
      for (let i = 0; i < size; i++) clients.push(sendPlanned(server.url, planRequest(rand, `c${wave}-${i}`), 8_000));
      if (rand() < 0.6) purges.push(purge(server.url, TOKEN, rand));
      await new Promise((resolve) => setTimeout(resolve, 300 + rand() * 600));
    }
    origin.setDown("up");
    return {
      cap,
      ...knobs.judged,
      peak: origin.peak(),
      atPeak: origin.atPeak(),
      calls: origin.calls,
      clients: await Promise.all(clients),
      purges: await Promise.all(purges),
    };
  } finally {
    await Promise.all([...clients, ...purges]).catch(() => undefined);
    await server.close();
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
