/**
 * Preloaded (`node -r ./bench/loop-delay.mjs …`) into every Node server the bench starts
 * (herdless, the fleet's members, the bare servers): once a second it writes one line
 *
 *   bench-loop {"at":…,"thread":"worker","maxMs":…,"p99Ms":…,"gcMs":…,"gcMaxMs":…,"gcs":…}
 *
 * to stderr with that thread's event-loop delay (perf_hooks monitorEventLoopDelay) and its GC
 * pauses over the second. `-r` (Node 20.19+ requires ES modules), not `--import`: Node 20 runs
 * `-r` preloads in worker threads too, and the herdless CLI serves in one (src/node/bounded-heap.ts). The
 * bench reads the lines of the measured run (cell.ts) to tell a stalled event loop, a GC
 * pause and a slow answer apart.
 */
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import process from "node:process";
import { clearInterval, setInterval } from "node:timers";
import { isMainThread } from "node:worker_threads";

const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
let gcMs = 0;
let gcMaxMs = 0;
let gcs = 0;
const gc = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    gcMs += entry.duration;
    gcMaxMs = Math.max(gcMaxMs, entry.duration);
    gcs++;
  }
});
gc.observe({ entryTypes: ["gc"] });

const ms = (ns) => Math.round(ns / 1e4) / 100;
const round = (n) => Math.round(n * 100) / 100;
const report = setInterval(() => {
  const line = {
    at: Date.now(),
    thread: isMainThread ? "main" : "worker",
    maxMs: ms(delay.max),
    p99Ms: ms(delay.percentile(99)),
    gcMs: round(gcMs),
    gcMaxMs: round(gcMaxMs),
    gcs,
  };
  process.stderr.write(`bench-loop ${JSON.stringify(line)}\n`);
  delay.reset();
  gcMs = 0;
  gcMaxMs = 0;
  gcs = 0;
}, 1000).unref();

// A process that serves in a worker thread (the herdless CLI, bounded-heap.ts) leaves its
// main thread idle, and the bench reads the serving thread's lines only (fleet-tail.ts). The
// monitor's 5 ms timer would wake that idle thread 200 times a second: ~3 µs of CPU per
// request at the hit path's rate on this machine (32.6 against 29.6 µs, 2026-11-30), charged
// to the server but absent in production. The main thread stops measuring once a worker starts.
if (isMainThread)
  process.once("worker", () => {
    delay.disable();
    gc.disconnect();
    clearInterval(report);
  });
