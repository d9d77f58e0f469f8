import { spawn, spawnSync, execFileSync, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { get as httpGet, type IncomingHttpHeaders } from "node:http";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
/** wrangler bundles the Worker and Miniflare boots workerd: seconds, more on a loaded machine. */
const STARTUP_MS = 90_000;

let origin: FragileOrigin;
let child: ChildProcess;
let base: string;
let output = "";
/** The processes npm start had started, recorded before it is stopped. */
let started: number[] = [];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Every process started under `pid`, however deep (wrangler, workerd, esbuild, the demo origin), with its command. */
function descendants(pid: number): { pid: number; comm: string }[] {
  const rows = execFileSync("ps", ["-eo", "pid=,ppid=,comm="], { encoding: "utf8" })
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 3)
    .map(([p, pp, comm]) => ({ pid: Number(p), ppid: Number(pp), comm: comm! }));
  const found: { pid: number; comm: string }[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const row of rows.filter((r) => r.ppid === parent)) {
      found.push({ pid: row.pid, comm: row.comm });
      queue.push(row.pid);
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
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
    child = spawn(process.execPath, ["scripts/start.js"], {
      cwd: root,
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
    // Normally stopped by the last test; if that failed, nothing may stay behind.
    for (const pid of [child.pid!, ...started].filter(alive)) process.kill(pid, "SIGKILL");
    await origin?.close();
  }, 30_000);

  it("serves through the Worker in workerd: MISS, then HIT, then STALE", async () => {
    // npm start keeps its state in .wrangler/ between runs: a path no run used before.
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

  it("answers on the Worker's own socket: a client that accepts gzip gets the cached bytes with their Content-Length", async () => {
    // wrangler dev's proxy gzipped text for such a client (chunked, no Content-Length), and
    // held any Worker to ~700 requests a second; npm start serves workerd's socket directly.
    const path = `/length-${randomUUID()}`;
    await get(path);
    const answer = await new Promise<{ headers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      httpGet(`${base}${path}`, { headers: { "accept-encoding": "gzip, deflate, br" } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
      }).on("error", reject);
    });
    expect(answer.headers["cache-status"]).toMatch(/^herdless; hit/);
    expect(answer.headers["content-encoding"]).toBeUndefined();
    expect(answer.headers["content-length"]).toBe(String(answer.body.length));
  });

  it("leaves no workerd behind after SIGTERM to its own process (what npm passes on)", async () => {
    started = descendants(child.pid!).map((p) => p.pid);
    expect(descendants(child.pid!).some((p) => p.comm.includes("workerd"))).toBe(true);
    process.kill(child.pid!, "SIGTERM");
    // start.js gives Miniflare 5 s to stop workerd, then kills the whole tree.
    await until("processes still running", 15_000, async () =>
      [child.pid!, ...started].some(alive) ? undefined : true,
    );
    expect([child.pid!, ...started].filter(alive)).toEqual([]);
  }, 20_000);
});

describe("npm start when npm itself is killed", () => {
  it(
    "stops workerd and itself: npm's sh -c outlives a SIGKILLed npm, so the parent alone never changes",
    async () => {
      const port = await freePort();
      let log = "";
      // As npm runs it: npm (here a shell that cannot exec its command) → sh -c → node scripts/start.js.
      const npm = spawn("sh", ["-c", 'sh -c "node scripts/start.js"; true'], {
        cwd: root,
        env: {
          ...process.env,
          npm_lifecycle_event: "start",
          PORT: String(port),
          ORIGIN_URL: "http://127.0.0.1:9",
          WRANGLER_SEND_METRICS: "false",
          CLOUDFLARE_CF_FETCH_ENABLED: "false",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      npm.stdout?.on("data", (chunk: Buffer) => (log += chunk.toString()));
      npm.stderr?.on("data", (chunk: Buffer) => (log += chunk.toString()));
      const tree = await until(`no workerd under npm; output:\n${log}`, STARTUP_MS, async () => {
        const found = descendants(npm.pid!);
        return found.some((p) => p.comm.includes("workerd")) && log.includes("running in workerd") ? found : undefined;
      });
      try {
        process.kill(npm.pid!, "SIGKILL");
        // start.js looks every 500 ms and gives Miniflare 5 s to stop workerd.
        await until("processes still running", 15_000, async () => (tree.some((p) => alive(p.pid)) ? undefined : true));
      } finally {
        for (const p of tree.filter((p) => alive(p.pid))) process.kill(p.pid, "SIGKILL");
      }
      expect(tree.filter((p) => alive(p.pid))).toEqual([]);
    },
    STARTUP_MS + 20_000,
  );
});

describe("npm start with an invalid config", () => {
  it("exits 1 before starting workerd, naming the field", () => {
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
    expect(run.stdout).not.toMatch(/running in workerd/);
  });

  it("exits 1 naming ORIGIN_URL when it is not an http(s) URL", () => {
    const run = spawnSync(process.execPath, ["scripts/start.js"], {
      cwd: root,
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, ORIGIN_URL: "/var/www" },
    });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(
      'ORIGIN_URL: ORIGIN_URL must be an absolute http(s) URL such as http://127.0.0.1:8080 (got "/var/www")',
    );
  });

  it("exits 1 naming ORIGIN_PORT when the demo origin's port is taken, before anything starts", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const address = taken.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    try {
      const { ORIGIN_URL: _unset, ...env } = process.env;
      const run = spawnSync(process.execPath, ["scripts/start.js"], {
        cwd: root,
        encoding: "utf8",
        timeout: 30_000,
        env: { ...env, ORIGIN_PORT: String(address.port) },
      });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(
        `127.0.0.1:${address.port} is not free (EADDRINUSE); ORIGIN_PORT=… moves the demo origin`,
      );
      expect(run.stdout).not.toMatch(/fragile origin listening/);
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });

  it("exits 1 naming the port when PORT is taken, before workerd starts", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const address = taken.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    try {
      const run = spawnSync(process.execPath, ["scripts/start.js"], {
        cwd: root,
        encoding: "utf8",
        timeout: 30_000,
        env: { ...process.env, PORT: String(address.port), ORIGIN_URL: "http://127.0.0.1:9" },
      });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(`127.0.0.1:${address.port} is not free`);
      expect(run.stderr).not.toMatch(/kj::Exception/);
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });
});
