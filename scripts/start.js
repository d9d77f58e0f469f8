#!/usr/bin/env node
/**
 * `npm start`: herdless in the real Workers runtime (workerd, through Miniflare, on its own
 * socket) in front of ORIGIN_URL. Without ORIGIN_URL it first starts the demo fragile origin on
 * 127.0.0.1:8080 (ORIGIN_PORT to move it) and waits until it listens.
 *
 *   PORT=8787 ORIGIN_URL=http://127.0.0.1:9000 npm start
 *
 * The herdless config (HERDLESS_CONFIG from the environment, else the one in
 * wrangler.jsonc, with ORIGIN_URL over origin.url) is validated first: a bad one stops
 * here with the message naming the field, before workerd starts.
 *
 * Everything stays on this machine: wrangler metrics and the `request.cf` download are off.
 */
/* global clearTimeout, setInterval */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseEnv } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const port = process.env.PORT ?? "8787";
const originPort = process.env.ORIGIN_PORT ?? "8080";
const childEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
/** @type {import("node:child_process").ChildProcess[]} */
const children = [];
/** @type {(() => Promise<void>)[]} what else must stop with us (Miniflare's workerd) */
const stoppers = [];
let stopping = false;

/**
 * Signals a child and everything it started: each child leads its own process group, so
 * whatever it started goes too, even when it does not stop that itself.
 */
function signalTree(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is gone already.
  }
}

function stop(code) {
  if (stopping) return;
  stopping = true;
  for (const child of children) signalTree(child, "SIGTERM");
  // Miniflare stops its workerd on dispose; give everything a moment, then make sure.
  const force = setTimeout(() => {
    for (const child of children) signalTree(child, "SIGKILL");
    process.exit(code);
  }, 5_000);
  force.unref();
  Promise.all([
    ...stoppers.map((dispose) => dispose().catch(() => undefined)),
    ...children.map((child) =>
      child.exitCode !== null || child.signalCode !== null ? null : new Promise((r) => child.once("exit", r)),
    ),
  ]).then(() => process.exit(code));
}

function track(child, name) {
  children.push(child);
  child.once("exit", (code, signal) => {
    if (stopping) return;
    console.error(`herdless: ${name} exited (${signal ?? `code ${code}`}); stopping`);
    stop(code ?? 1);
  });
  return child;
}

/** Starts the demo origin and resolves with its URL once it prints its listening line. */
async function startDemoOrigin() {
  await portFree(originPort, "ORIGIN_PORT", "the demo origin (or ORIGIN_URL=… fronts your own origin)");
  const child = track(
    spawn(process.execPath, ["--import", "tsx", join(root, "fixtures/demo-origin.ts"), "--port", originPort], {
      cwd: root,
      env: childEnv,
      detached: true,
      stdio: ["ignore", "pipe", "inherit"],
    }),
    "demo origin",
  );
  return new Promise((resolve, reject) => {
    let buffered = "";
    const timer = setTimeout(() => reject(new Error("demo origin did not start within 15 s")), 15_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk) => {
      process.stdout.write(`[origin] ${chunk}`);
      buffered += chunk;
      const match = /fragile origin listening on (http:\/\/\S+)/.exec(buffered);
      if (match) {
        clearTimeout(timer);
        buffered = "";
        resolve(match[1]);
      }
    });
    child.once("exit", () => reject(new Error("demo origin exited before it was ready")));
  });
}

/** wrangler.jsonc as wrangler reads it: the bindings, migrations, vars and compatibility settings. */
async function wranglerConfig() {
  const { experimental_readRawConfig } = await import("wrangler");
  return experimental_readRawConfig({ config: join(root, "wrangler.jsonc") }).rawConfig;
}

/** The HERDLESS_CONFIG the Worker will see: the environment's, else .dev.vars', else wrangler.jsonc's. */
function herdlessConfigText(rawConfig, local) {
  if (process.env.HERDLESS_CONFIG !== undefined) return process.env.HERDLESS_CONFIG;
  const value = local.HERDLESS_CONFIG ?? rawConfig.vars?.HERDLESS_CONFIG;
  if (value === undefined) return "";
  // wrangler.jsonc may give it as a JSON object, which the Worker takes as is (config-env.ts):
  // its text here. Any other kind goes on to validateConfig, which refuses it naming the var;
  // turned into "" before, it left the operator's config replaced by the defaults.
  return typeof value === "object" && value !== null && !Array.isArray(value) ? JSON.stringify(value) : value;
}

/** Throws the Worker's own CONFIG_INVALID message for a config it would refuse. */
async function validateConfig(originUrl, configText) {
  const { tsImport } = await import("tsx/esm/api");
  const { configFromEnv } = await tsImport("../src/cloudflare/config-env.ts", import.meta.url);
  configFromEnv({ ORIGIN_URL: originUrl, HERDLESS_CONFIG: configText });
}

/**
 * The Worker as `wrangler deploy` would upload it: wrangler's own bundler, into .wrangler/
 * (ignored by git). Seconds; run on every start so the code served is the tree's.
 */
function bundleWorker() {
  const outdir = join(root, ".wrangler/start-bundle");
  const out = spawnSync(process.execPath, [wranglerBin(), "deploy", "--dry-run", "--outdir", outdir], {
    cwd: root,
    env: childEnv,
    encoding: "utf8",
  });
  if (out.status !== 0)
    throw new Error(`wrangler could not bundle the Worker:\n${(out.stderr + out.stdout).slice(-2000)}`);
  return { scriptPath: join(outdir, "worker.js"), modulesRoot: outdir };
}

function wranglerBin() {
  return join(dirname(createRequire(import.meta.url).resolve("wrangler/package.json")), "bin/wrangler.js");
}

/**
 * Refuses a taken port with a plain message, before workerd (or the demo origin) prints its
 * own stack about it. `variable` is the environment variable that moves it.
 */
function portFree(wanted, variable = "PORT", what = "herdless") {
  if (!/^\d{1,5}$/.test(wanted) || Number(wanted) < 1 || Number(wanted) > 65535)
    return Promise.reject(new Error(`${variable} must be a port number (1–65535), got ${JSON.stringify(wanted)}`));
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", (error) =>
      reject(
        new Error(`127.0.0.1:${wanted} is not free (${error.code ?? error.message}); ${variable}=… moves ${what}`),
      ),
    );
    probe.listen(Number(wanted), "127.0.0.1", () => probe.close(() => resolve()));
  });
}

/** `.dev.vars`, as `wrangler dev` reads it (local secrets such as HERDLESS_ADMIN_TOKEN). */
function devVars() {
  const path = join(root, ".dev.vars");
  return existsSync(path) ? parseEnv(readFileSync(path, "utf8")) : {};
}

/**
 * workerd through Miniflare, with the Worker on its own socket (`unsafeDirectSockets`), not
 * behind `wrangler dev`'s proxy: that proxy holds any Worker to ~700 requests a second on a
 * small machine, answers 503 when it restarts mid-request, and gzips text for clients that
 * accept it (so a cached `Content-Length` never reaches them), none of which is the Worker's
 * behaviour. The bindings, migrations and compatibility settings are wrangler.jsonc's; the
 * Durable Objects and the Cache API persist in .wrangler/state, where `wrangler dev` keeps them.
 */
async function startWorker(rawConfig, local, originUrl, configText, demo) {
  await portFree(port);
  const { Miniflare, Log, LogLevel } = await import("miniflare");
  const sqliteClasses = new Set((rawConfig.migrations ?? []).flatMap((m) => m.new_sqlite_classes ?? []));
  const durableObjects = Object.fromEntries(
    (rawConfig.durable_objects?.bindings ?? []).map((b) => [
      b.name,
      { className: b.class_name, useSQLite: sqliteClasses.has(b.class_name) },
    ]),
  );
  // The config checked before start (configText) is the one the Worker gets.
  const vars = { ...rawConfig.vars, ...local, ORIGIN_URL: originUrl, HERDLESS_CONFIG: configText };
  // The admin API needs a token: HERDLESS_ADMIN_TOKEN if given, else a fresh one for the local demo.
  const givenToken = process.env.HERDLESS_ADMIN_TOKEN || vars.HERDLESS_ADMIN_TOKEN;
  const adminToken = givenToken || (demo ? randomBytes(12).toString("hex") : "");
  if (adminToken) vars.HERDLESS_ADMIN_TOKEN = adminToken;
  const { scriptPath, modulesRoot } = bundleWorker();
  const miniflare = new Miniflare({
    cf: false,
    log: new Log(LogLevel.WARN),
    defaultPersistRoot: join(root, ".wrangler/state/v3"),
    durableObjectsPersist: true,
    cachePersist: true,
    workers: [
      {
        name: rawConfig.name ?? "herdless",
        modules: true,
        scriptPath,
        modulesRoot,
        compatibilityDate: rawConfig.compatibility_date,
        compatibilityFlags: rawConfig.compatibility_flags ?? [],
        bindings: vars,
        durableObjects,
        unsafeDirectSockets: [{ host: "127.0.0.1", port: Number(port) }],
      },
    ],
  });
  stoppers.push(() => miniflare.dispose());
  try {
    await miniflare.ready;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`workerd could not start on 127.0.0.1:${port}: ${reason}`);
  }
  const url = `http://127.0.0.1:${port}`;
  console.log(`
herdless is running in workerd
  cache   ${url}
  origin  ${originUrl}

Try:
  curl -i ${url}/          # first time: a miss, fetched from the origin
  curl -i ${url}/          # again: watch the Cache-Status and Age headers
${
  demo
    ? `
The demo origin falls over past 4 concurrent requests. Send 50 at once through the cache:
  seq 50 | xargs -P50 -I{} curl -s -o /dev/null -w '%{http_code} ' ${url}/page; echo
all 200: the origin saw one request. Now the same 50 straight at the origin:
  seq 50 | xargs -P50 -I{} curl -s -o /dev/null -w '%{http_code} ' ${originUrl}/page; echo
it crashes (503s, down for 5 s). The cache still answers every one with 200:
  seq 50 | xargs -P50 -I{} curl -s -o /dev/null -w '%{http_code} ' ${url}/page; echo
`
    : ""
}${adminToken ? `\nDashboard: ${url}/__herdless/   (token ${givenToken ? "from HERDLESS_ADMIN_TOKEN" : adminToken})\n` : ""}
Ctrl-C stops ${demo ? "both" : "it"}.
`);
}

/**
 * Under npm, npm itself: npm runs the script through `sh -c`, and a shell that does not exec
 * its command (dash, Debian's sh) outlives a killed npm, so our own parent never changes.
 * Read from /proc (Linux); elsewhere, and outside npm, undefined.
 */
function npmProcess() {
  if (process.env.npm_lifecycle_event === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${process.ppid}/stat`, "utf8");
    // Fields after the command name, which may hold spaces: state, then the parent's pid.
    const grandparent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return grandparent > 1 ? grandparent : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === "EPERM";
  }
}

// Whatever stops us stops the children: Ctrl-C (the children, in their own groups, do not
// get the terminal's SIGINT), SIGTERM from npm or a supervisor, SIGHUP when the terminal
// closes, and a parent or an npm that died without passing a signal on (SIGKILL).
process.on("SIGINT", () => stop(130));
process.on("SIGTERM", () => stop(143));
process.on("SIGHUP", () => stop(129));
const parent = process.ppid;
const npm = npmProcess();
setInterval(() => {
  if (process.ppid !== parent || (npm !== undefined && !alive(npm))) stop(1);
}, 500).unref();

try {
  const rawConfig = await wranglerConfig();
  const local = devVars();
  const configText = herdlessConfigText(rawConfig, local);
  // Checked before anything starts; the demo origin's URL is only known later, so a
  // stand-in URL lets the rest of the config be checked now.
  await validateConfig(process.env.ORIGIN_URL || `http://127.0.0.1:${originPort}`, configText);
  const originUrl = process.env.ORIGIN_URL || (await startDemoOrigin());
  if (!stopping) await startWorker(rawConfig, local, originUrl, configText, !process.env.ORIGIN_URL);
} catch (error) {
  console.error(`herdless: ${error instanceof Error ? error.message : String(error)}`);
  stop(1);
}
