import { spawn, spawnSync, execFileSync, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
/** wrangler dev bundles and boots workerd: seconds, more on a loaded machine. */
const STARTUP_MS = 90_000;

let origin: FragileOrigin;
let child: ChildProcess;
let base: string;
let output = "";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Processes still in the group of `npm start` (wrangler, workerd, esbuild). */
function groupMembers(pgid: number): string[] {
  const lines = execFileSync("ps", ["-eo", "pid=,pgid=,comm="], { encoding: "utf8" }).split("\n");
  return lines.filter((line) => line.trim().split(/\s+/)[1] === String(pgid)).map((line) => line.trim());
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > giveUpAt) throw new Error(`${what} within ${timeoutMs} ms; output:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function get(path: string) {
  const res = await fetch(`${base}${path}`);
  return { status: res.status, cacheStatus: res.headers.get("cache-status") ?? "", body: await res.text() };
}

describe("npm start", () => {
  beforeAll(async () => {
    origin = await startFragileOrigin({ cacheControl: "max-age=1, stale-while-revalidate=60" });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    // Its own process group, so the test can stop wrangler and workerd together.
    child = spawn(process.execPath, ["scripts/start.js"], {
      cwd: root,
      detached: true,
      env: {
        ...process.env,
        PORT: String(port),
        ORIGIN_URL: origin.url,
        WRANGLER_SEND_METRICS: "false",
        CLOUDFLARE_CF_FETCH_ENABLED: "false",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
    await until("npm start did not serve", STARTUP_MS, async () => (await fetch(`${base}/__ready`)).status);
  }, STARTUP_MS + 10_000);

  afterAll(async () => {
    const pgid = child.pid;
    if (pgid !== undefined) {
      try {
        process.kill(-pgid, "SIGTERM");
      } catch {
        // Already gone.
      }
      // start.js waits up to 5 s for wrangler to stop workerd, then kills it.
      await until("the process group did not exit", 15_000, async () =>
        groupMembers(pgid).length === 0 ? true : undefined,
      ).catch((error: unknown) => {
        process.kill(-pgid, "SIGKILL");
        throw error;
      });
    }
    await origin?.close();
  }, 30_000);

  it("serves through the Worker in workerd: MISS, then HIT, then STALE", async () => {
    // wrangler dev keeps its state in .wrangler/ between runs: a path no run used before.
    const path = `/smoke-${randomUUID()}`;
    const miss = await get(path);
    expect(miss.status).toBe(200);
    expect(miss.cacheStatus).toMatch(/fwd=uri-miss/);
    const hit = await get(path);
    expect(hit.cacheStatus).toMatch(/^herdless; hit/);
    expect(hit.body).toBe(miss.body);
    // The one real wait: workerd's clock cannot be moved from outside, and max-age=1 must pass.
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const stale = await get(path);
    expect(stale.cacheStatus).toMatch(/detail=stale-while-revalidate/);
    expect(stale.body).toBe(miss.body);
  });

  it("leaves no workerd behind once stopped", async () => {
    const pgid = child.pid!;
    expect(groupMembers(pgid).some((line) => line.includes("workerd"))).toBe(true);
    process.kill(-pgid, "SIGTERM");
    await until("workerd still running", 15_000, async () => (groupMembers(pgid).length === 0 ? true : undefined));
    expect(groupMembers(pgid)).toEqual([]);
  }, 20_000);
});

describe("npm start with an invalid config", () => {
  it("exits 1 before starting wrangler, naming the field", () => {
    const run = spawnSync(process.execPath, ["scripts/start.js"], {
      cwd: root,
      encoding: "utf8",
      timeout: 30_000,
      env: {
        ...process.env,
        ORIGIN_URL: "http://127.0.0.1:9",
        HERDLESS_CONFIG: JSON.stringify({ coordinator: { lockLeaseMs: "soon" } }),
      },
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/coordinator\.lockLeaseMs/);
    expect(run.stdout).not.toMatch(/wrangler|Ready on/);
  });
});
