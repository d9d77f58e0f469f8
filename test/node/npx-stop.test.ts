import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";

/**
 * npm as `npx herdless` runs it: the command in `sh -c` (a shell that does not exec it, as
 * dash often does not), SIGTERM passed on to the shell alone, and npm exiting once the shell
 * has. Prints the shell's pid on stdout.
 */
const FAKE_NPM = `
const { spawn } = require("node:child_process");
process.title = "npm exec herdless";
const sh = spawn("sh", ["-c", process.argv[1] + "; true"], { stdio: ["ignore", "ignore", "inherit"] });
process.stdout.write(sh.pid + "\\n");
process.on("SIGTERM", () => sh.kill("SIGTERM"));
sh.on("exit", () => process.exit(0));
`;

let orphan: number | undefined;

afterEach(() => {
  // The old code left herdless running: end it here, whatever the test found.
  if (orphan !== undefined) killQuietly(orphan);
  orphan = undefined;
});

describe("npx herdless", () => {
  it("drains and exits when npm is sent SIGTERM, instead of serving on orphaned with its port held", async () => {
    const command = `"${process.execPath}" --import tsx src/node/bin.ts --origin http://127.0.0.1:1 --port 0`;
    const npm = spawn(process.execPath, ["-e", FAKE_NPM, command], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, npm_lifecycle_event: "npx", npm_command: "exec" },
    });
    let stderr = "";
    npm.stderr.setEncoding("utf8");
    const listening = new Promise<string>((resolve) =>
      npm.stderr.on("data", (chunk: string) => {
        stderr += chunk;
        const url = /"msg":"herdless listening","url":"([^"]+)"/.exec(stderr)?.[1];
        if (url) resolve(url);
      }),
    );
    const [shPid] = (await once(npm.stdout, "data")) as [Buffer];
    const url = await listening;
    const herdless = Number(readFileSync(`/proc/${Number(shPid)}/task/${Number(shPid)}/children`, "utf8").trim());
    orphan = herdless;
    expect((await fetch(`${url}/__herdless/metrics`)).status).toBe(200);

    npm.kill("SIGTERM");
    await once(npm, "exit");
    // Before: the shell died of the SIGTERM, herdless went on serving under init, never drained.
    const deadline = Date.now() + 5_000;
    while (running(herdless) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(running(herdless)).toBe(false);
    expect(stderr).toContain('"msg":"shutting down","signal":"npm exited"');
    expect(stderr).toContain('"msg":"stopped"');
    await expect(fetch(`${url}/__herdless/metrics`)).rejects.toThrow();
  });
});

function running(pid: number): boolean {
  try {
    // A zombie (exited, not yet reaped by init) no longer runs.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone already.
  }
}
