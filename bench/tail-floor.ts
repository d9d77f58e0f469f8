/**
 * What any Worker pays for a cold key under the `tail-cold` burst in this workerd: the floor
 * under herdless's cold wave, against the bare Worker the scenario compares it with. Each
 * wave is the scenario's load (500 new connections on one key, origin latency 50 ms, spread
 * over 4 Workers on their own sockets) on a **fresh** workerd, so every isolate is as cold
 * as in the scenario; the variants are interleaved round by round:
 *
 * - `herdless`: the 4 simulated data centers, as `tail-cold` runs them (meter included);
 * - `floor`: 4 fetch-once Workers (worker-host.ts `floorWorker`): the first request of an
 *   isolate fetches the origin, the others await that promise, all answer the buffered bytes;
 * - `bare`: 4 bare Workers answering the origin's bytes, the scenario's baseline;
 * - `unmetered`: herdless's data centers without the bench's meter (worker-meter.js), which
 *   the scenarios always run: what the meter's counting costs the tail;
 * - `herdless:<bundle>`: the data centers of another build (`wrangler deploy --dry-run
 *   --outdir <dir>` in another checkout), its `worker.js` copied under this tree (Miniflare
 *   names modules from the working directory): before and after, interleaved.
 *
 * Each line: p99 and p99.9 of the whole load (as `tail-cold` reads them; with 500 connections
 * both fall in the first wave), and the slowest answer.
 *
 * `expiring` (5th argument) is `tail-expiring`'s floor instead: the origin sends max-age=2, every
 * target is warmed with one request before the load (as the scenario warms its key), and the
 * floor Workers fetch again once their answer is 2 s old, the requests meanwhile awaiting that
 * fetch: what any Worker that asks its origin every 2 s pays under the load, herdless or not.
 *
 *   flock /work/bench.lock node --import tsx bench/tail-floor.ts [rounds=3] [durationMs=3000] [modes=herdless,floor,bare] [cold|expiring]
 *   … bench/tail-floor.ts 4 3000 herdless:bench/results/tmp/before/worker.js,herdless,floor,bare
 *   … bench/tail-floor.ts 3 10000 herdless,floor,bare expiring
 */
import { loadavg } from "node:os";
import { captureSample } from "./bare-node.ts";
import { meterReading, runLoad } from "./cell.ts";
import { startOrigin } from "./origin.ts";
import { installReaper } from "./processes.ts";
import { HERDLESS_CONFIG, HOST } from "./scenarios.ts";
import { startWorkers } from "./worker-runtime.ts";

installReaper();
const rounds = Number(process.argv[2] ?? 3);
const durationMs = Number(process.argv[3] ?? 3000);
const modes = (process.argv[4] ?? "herdless,floor,bare").split(",");
const expiring = process.argv[5] === "expiring";
if (process.argv[5] !== undefined && !expiring && process.argv[5] !== "cold")
  throw new Error(`the 5th argument is cold or expiring: ${process.argv[5]}`);
for (const mode of modes)
  if (!["herdless", "unmetered", "floor", "bare"].includes(mode) && !mode.startsWith("herdless:"))
    throw new Error(`mode must be herdless, unmetered, herdless:<bundle>, floor or bare: ${mode}`);

/** `herdless:/some/dir/worker.js` shows as `herdless:dir`. */
const label = (mode: string): string =>
  mode.startsWith("herdless:") ? `herdless:${mode.split("/").at(-2) ?? "other"}` : mode;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const origin = await startOrigin(expiring ? "max-age=2" : "max-age=3600");
const sample = await captureSample(`${origin.url}/tail/hot`, HOST);
const rows: Record<string, number[][]> = {};
try {
  for (let round = 0; round < rounds; round++) {
    for (const mode of modes) {
      const other = mode.startsWith("herdless:") ? mode.slice("herdless:".length) : undefined;
      const workers = await startWorkers({
        originUrl: origin.url,
        config: HERDLESS_CONFIG,
        sample,
        floor: true,
        ...(expiring ? { floorTtlMs: 2_000 } : {}),
        ...(mode === "unmetered" ? { meter: false } : {}),
        ...(other ? { bundlePath: other } : {}),
      });
      try {
        const herdless = mode.startsWith("herdless") || mode === "unmetered";
        const targets = herdless ? workers.dataCenters : mode === "floor" ? workers.floor : workers.bare;
        // As the scenario does before its load: the meter's reset reaches every data center.
        // As the scenario warms its key: one request through every target.
        if (expiring) for (const target of targets) await captureSample(`${target}/tail/hot`, HOST);
        if (herdless && mode !== "unmetered") await meterReading(targets, "POST");
        await sleep(1000);
        const load = await runLoad({
          connections: 500,
          durationMs,
          paths: ["/tail/hot"],
          timeoutMs: 15_000,
          targets,
          host: HOST,
        });
        const { p99Ms, p999Ms, maxMs } = load.latency;
        (rows[mode] ??= []).push([p99Ms, p999Ms, maxMs]);
        console.log(
          `round ${round + 1} ${label(mode).padEnd(8)} p99 ${Math.round(p99Ms)} ms, p99.9 ${Math.round(p999Ms)} ms, max ${Math.round(maxMs)} ms, ${load.requests} requests, errors ${load.errors}, ${JSON.stringify(load.byCacheStatus)}, load ${loadavg()[0]?.toFixed(1)}`,
        );
      } finally {
        await workers.server.stop();
      }
    }
  }
  const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
  for (const mode of modes) {
    const r = rows[mode] ?? [];
    console.log(
      `median ${label(mode).padEnd(8)} p99 ${Math.round(median(r.map((x) => x[0]!)))} ms, p99.9 ${Math.round(median(r.map((x) => x[1]!)))} ms, max ${Math.round(median(r.map((x) => x[2]!)))} ms`,
    );
  }
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await origin.server.stop();
  process.exit();
}
