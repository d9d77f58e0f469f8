#!/usr/bin/env node
/**
 * `npm start`: herdless in the real Workers runtime (workerd, through `wrangler dev`) in
 * front of ORIGIN_URL. Without ORIGIN_URL it first starts the demo fragile origin on
 * 127.0.0.1:8080 (ORIGIN_PORT to move it) and waits until it listens.
 *
 *   PORT=8787 ORIGIN_URL=http://127.0.0.1:9000 npm start
 *
 * The herdless config (HERDLESS_CONFIG from the environment, else the one in
 * wrangler.jsonc, with ORIGIN_URL over origin.url) is validated first: a bad one stops
 * here with the message naming the field, before wrangler starts.
 *
 * Everything stays on this machine: wrangler metrics and the `request.cf` download are off,
 * and wrangler runs `--local`.
 */
/* global clearTimeout, setInterval */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const port = process.env.PORT ?? "8787";
const originPort = process.env.ORIGIN_PORT ?? "8080";
const childEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
/** @type {import("node:child_process").ChildProcess[]} */
const children = [];
let stopping = false;

/**
 * Signals a child and everything it started: each child leads its own process group, so
 * workerd (started by wrangler) goes too, even when wrangler does not stop it itself.
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
  // wrangler tears workerd down on SIGTERM; give it a moment, then make sure.
  const force = setTimeout(() => {
    for (const child of children) signalTree(child, "SIGKILL");
    process.exit(code);
  }, 5_000);
  force.unref();
  Promise.all(
    children.map((child) =>
      child.exitCode !== null || child.signalCode !== null ? null : new Promise((r) => child.once("exit", r)),
    ),
  ).then(() => process.exit(code));
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
function startDemoOrigin() {
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

/** The HERDLESS_CONFIG the Worker will see: the environment's, else wrangler.jsonc's. */
async function herdlessConfigText() {
  if (process.env.HERDLESS_CONFIG !== undefined) return process.env.HERDLESS_CONFIG;
  const { experimental_readRawConfig } = await import("wrangler");
  const { rawConfig } = experimental_readRawConfig({ config: join(root, "wrangler.jsonc") });
  const value = rawConfig.vars?.HERDLESS_CONFIG;
  return typeof value === "string" ? value : "";
}

/** Throws the Worker's own CONFIG_INVALID message for a config it would refuse. */
async function validateConfig(originUrl, configText) {
  const { tsImport } = await import("tsx/esm/api");
  const { configFromEnv } = await tsImport("../src/cloudflare/config-env.ts", import.meta.url);
  configFromEnv({ ORIGIN_URL: originUrl, HERDLESS_CONFIG: configText });
}

function startWorker(originUrl, configText, demo) {
  const wrangler = join(dirname(createRequire(import.meta.url).resolve("wrangler/package.json")), "bin/wrangler.js");
  const args = [
    "dev",
    "--local",
    "--ip",
    "127.0.0.1",
    "--port",
    port,
    "--var",
    `ORIGIN_URL:${originUrl}`,
    "--show-interactive-dev-session=false",
  ];
  if (process.env.HERDLESS_CONFIG !== undefined) args.push("--var", `HERDLESS_CONFIG:${configText}`);
  // The admin API needs a token: HERDLESS_ADMIN_TOKEN if given, else a fresh one for the local demo.
  const adminToken = process.env.HERDLESS_ADMIN_TOKEN || (demo ? randomBytes(12).toString("hex") : "");
  if (adminToken) args.push("--var", `HERDLESS_ADMIN_TOKEN:${adminToken}`);
  const child = track(
    spawn(process.execPath, [wrangler, ...args], {
      cwd: root,
      env: childEnv,
      detached: true,
      stdio: ["ignore", "pipe", "inherit"],
    }),
    "wrangler dev",
  );
  child.stdout.setEncoding("utf8");
  let announced = false;
  child.stdout.on("data", (chunk) => {
    process.stdout.write(chunk);
    if (!announced && /Ready on http/.test(chunk)) {
      announced = true;
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
}${adminToken ? `\nDashboard: ${url}/__herdless/   (token ${process.env.HERDLESS_ADMIN_TOKEN ? "from HERDLESS_ADMIN_TOKEN" : adminToken})\n` : ""}
Ctrl-C stops both.
`);
    }
  });
}

// Whatever stops us stops the children: Ctrl-C (the children, in their own groups, do not
// get the terminal's SIGINT), SIGTERM from npm or a supervisor, SIGHUP when the terminal
// closes, and a parent (npm) that died without passing a signal on.
process.on("SIGINT", () => stop(130));
process.on("SIGTERM", () => stop(143));
process.on("SIGHUP", () => stop(129));
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop(1);
}, 500).unref();

try {
  const configText = await herdlessConfigText();
  // Checked before anything starts; the demo origin's URL is only known later, so a
  // stand-in URL lets the rest of the config be checked now.
  await validateConfig(process.env.ORIGIN_URL || `http://127.0.0.1:${originPort}`, configText);
  const originUrl = process.env.ORIGIN_URL || (await startDemoOrigin());
  if (!stopping) startWorker(originUrl, configText, !process.env.ORIGIN_URL);
} catch (error) {
  console.error(`herdless: ${error instanceof Error ? error.message : String(error)}`);
  stop(1);
}
