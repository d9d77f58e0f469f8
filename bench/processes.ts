/**
 * Child processes of the bench: every server runs in its own process group (spawned
 * detached) so stopping it also stops what it spawned (workerd under Miniflare), and its
 * CPU is read from /proc for the whole group, whatever the program.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** Scratch files of a bench run (configs, profiles); under results/ so a run leaves them in one place. */
export const TMP_DIR = join(ROOT, "bench/results/tmp");

/** Environment of every child: nothing may leave the machine. */
export const CHILD_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  WRANGLER_SEND_METRICS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  NO_COLOR: "1",
};

export interface Server {
  name: string;
  /** the process group id (= pid of the leader) */
  pgid: number;
  /** what readyPattern's first group captured (usually the URL) */
  ready: string;
  /** CPU of every process in the group so far, in ms (utime + stime from /proc) */
  cpuMs(): number;
  stop(): Promise<void>;
  /** SIGKILL to the whole group, resolved once the leader exited (fault scenarios). */
  kill(): Promise<void>;
  /** What it printed on stdout and stderr so far (the first MB). */
  output(): string;
}

const live = new Set<ChildProcess>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Last resort on exit (normal or Ctrl-C): no server outlives the bench. */
export function installReaper(): void {
  const reap = (): void => {
    for (const child of live) killGroup(child, "SIGKILL");
  };
  process.once("exit", reap);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      reap();
      process.exit(130);
    });
  }
}

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  /** matched against stdout+stderr; group 1 is returned as `ready` */
  readyPattern: RegExp;
  env?: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
}

/** Starts a server and resolves once it printed its ready line; rejects with its output otherwise. */
export function startServer(options: StartOptions): Promise<Server> {
  const child = spawn(options.command, options.args, {
    cwd: ROOT,
    env: options.env ?? CHILD_ENV,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  void exited.then(() => live.delete(child));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    killGroup(child, "SIGTERM");
    const timer = setTimeout(() => killGroup(child, "SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
    killGroup(child, "SIGKILL"); // stragglers of the group
  };
  return new Promise((resolve, reject) => {
    let output = "";
    const timeoutMs = options.startTimeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`${options.name} did not start within ${timeoutMs} ms:\n${output.slice(-2000)}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      if (output.length < 1_000_000) output += chunk.toString("utf8");
      const match = options.readyPattern.exec(output);
      if (match && child.pid !== undefined) {
        clearTimeout(timer);
        // Keep draining the pipes so a chatty child never blocks on a full one.
        resolve({
          name: options.name,
          pgid: child.pid,
          ready: match[1] ?? match[0],
          cpuMs: () => groupCpuMs(child.pid ?? 0),
          stop,
          kill: async () => {
            if (child.exitCode !== null || child.signalCode !== null) return;
            killGroup(child, "SIGKILL");
            await exited;
          },
          output: () => output,
        });
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(`${options.name} exited (${signal ?? `code ${code}`}) before it was ready:\n${output.slice(-2000)}`),
      );
    });
  });
}

/** Preloaded into every Node server: its event-loop delay and GC pauses, once a second (loop-delay.mjs). */
export const LOOP_DELAY_PRELOAD = ["-r", join(ROOT, "bench/loop-delay.mjs")];

/** `node -r loop-delay.mjs --import tsx <script> ...args` as a server. */
export function startTsServer(
  name: string,
  script: string,
  args: string[],
  readyPattern: RegExp,
  env?: NodeJS.ProcessEnv,
): Promise<Server> {
  return startServer({
    name,
    command: process.execPath,
    args: [...LOOP_DELAY_PRELOAD, "--import", "tsx", join(ROOT, script), ...args],
    readyPattern,
    ...(env ? { env } : {}),
  });
}

/** Runs a TypeScript script to completion and returns its stdout (rejects on a non-zero exit or past timeoutMs). */
export function runTsScript(script: string, args: string[], timeoutMs: number): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, script), ...args], {
    cwd: ROOT,
    env: CHILD_ENV,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => killGroup(child, "SIGKILL"), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${script} failed (${signal ?? `code ${code}`}):\n${stderr.slice(-2000)}`));
    });
  });
}

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const out = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    const n = Number(out.stdout.trim());
    ticksPerSecond = out.status === 0 && n > 0 ? n : 100;
  }
  return ticksPerSecond;
}

/** utime + stime of every live process whose process group is `pgid`, in ms (0 where /proc is missing). */
export function groupCpuMs(pgid: number): number {
  let ticks = 0;
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return 0;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // Fields after the parenthesised command name: state ppid pgrp session ... utime(14) stime(15).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) !== pgid) continue;
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return Math.round((ticks / clockTicks()) * 1000);
}

/**
 * utime + stime of each thread of process `pid` (its /proc/<pid>/task), in ms by thread id.
 * A Node server's serving thread apart from V8's helpers (parallel GC, concurrent compiling)
 * and, for the herdless CLI, the main thread that hands serving to a worker thread.
 */
export function threadCpuMs(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(Number(tid), Math.round(((Number(fields[11]) + Number(fields[12])) / clockTicks()) * 1000));
    } catch {
      // the thread ended
    }
  }
  return out;
}
