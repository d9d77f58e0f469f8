import { readFileSync } from "node:fs";

/**
 * Under `npx herdless` (or an npm script) the process tree is npm → `sh -c herdless …` → this
 * process. npm passes a SIGTERM on to the shell alone, and a shell that does not exec its
 * command (dash, Debian's and Ubuntu's `sh`) dies of it without passing it on: `kill <npx's
 * pid>` from a supervisor or a script left herdless serving, orphaned, holding its port, and
 * never drained. So, when npm launched this process, its going (or the shell's) is taken as a
 * stop request, and the server drains as on SIGTERM.
 *
 * Calls `stop` once, with the reason, when that happens; returns what ends the watch. Outside
 * npm (no `npm_lifecycle_event`), or where /proc cannot be read, it watches nothing: a process
 * started by a shell that later exits (`nohup herdless &`) must keep serving.
 */
export function watchLauncher(stop: (reason: string) => void, env: NodeJS.ProcessEnv = process.env): () => void {
  if (env.npm_lifecycle_event === undefined) return () => undefined;
  const parent = process.ppid;
  const npm = npmPid(parent);
  if (npm === undefined) return () => undefined;
  const timer = setInterval(() => {
    if (process.ppid === parent && alive(npm)) return;
    clearInterval(timer);
    stop("npm exited");
  }, WATCH_INTERVAL_MS);
  // The watch never keeps the process alive by itself.
  timer.unref();
  return () => clearInterval(timer);
}

const WATCH_INTERVAL_MS = 500;
const SHELLS = new Set(["sh", "dash", "bash", "ash", "zsh", "busybox"]);

/** npm's pid: the parent, or the grandparent when the parent is the shell npm ran the command in. */
function npmPid(parent: number): number | undefined {
  const stat = procStat(parent);
  if (!stat) return undefined;
  if (!SHELLS.has(stat.name)) return parent;
  return stat.ppid > 1 ? stat.ppid : undefined;
}

/** A process's name and parent from /proc (Linux); undefined elsewhere. */
function procStat(pid: number): { name: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The name is in parentheses and may hold spaces and parentheses: the fields after the last ")".
    const close = stat.lastIndexOf(")");
    const name = stat.slice(stat.indexOf("(") + 1, close);
    const ppid = Number(stat.slice(close + 2).split(" ")[1]);
    return Number.isInteger(ppid) ? { name, ppid } : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}
