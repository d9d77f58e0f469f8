import { spawn, type ChildProcess } from "node:child_process";

export interface CliProcess {
  child: ChildProcess;
  url: string;
  mode: string;
  /** The client connections it holds at once (`server.maxConnections`, or derived). */
  maxConnections: number;
}

/**
 * Starts one herdless process (the CLI from source) and resolves with its URL and mode,
 * read from its "herdless listening" log line; `env` is added to this process's environment,
 * and `openFiles` sets its open-file limit (`ulimit -n`, soft and hard). The caller kills it.
 *
 * @example
 * const member = await launchCli(["--origin", origin.url, "--redis", redis.url]);
 */
export function launchCli(args: string[], env: NodeJS.ProcessEnv = {}, openFiles?: number): Promise<CliProcess> {
  const argv = [
    process.execPath,
    "--import",
    "tsx",
    "src/node/bin.ts",
    ...args,
    "--port",
    "0",
    "--log-level",
    "info",
  ] as const;
  const [command, ...rest] =
    openFiles === undefined ? argv : ["sh", "-c", `ulimit -n ${openFiles} && exec "$0" "$@"`, ...argv];
  const child = spawn(command, rest, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } });
  return new Promise((resolve, reject) => {
    let buffered = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      buffered += chunk;
      for (let newline = buffered.indexOf("\n"); newline >= 0; newline = buffered.indexOf("\n")) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        const log = JSON.parse(line) as { msg: string; url?: string; mode?: string; maxConnections?: number };
        if (log.msg === "herdless listening")
          resolve({ child, url: log.url!, mode: log.mode!, maxConnections: log.maxConnections! });
      }
    });
    child.once("exit", (code) => reject(new Error(`herdless exited with ${code} before listening: ${buffered}`)));
  });
}
