#!/usr/bin/env node
/**
 * The package as a user gets it: `npm pack` (which builds dist/), installed into a fresh
 * project outside this repository from the tarball and the npm cache, then
 *   (a) every subpath imported from plain Node ESM, and the store conformance suite of
 *       herdless/core/testing run by the project's own vitest against a store;
 *   (b) a TypeScript file naming every public export of every subpath, type-checked with
 *       module NodeNext and skipLibCheck off (so the shipped .d.ts are checked too);
 *   (c) `npx herdless --help`, one cached request through `npx herdless`, the clear error
 *       for --redis without ioredis, and examples/embed-node serving /blog/*;
 *   (d) examples/embed-worker (a Worker that re-exports herdless's Durable Objects and
 *       mounts herdless on /blog/*) type-checked, built with `wrangler deploy --dry-run`,
 *       and its bundle served by Miniflare.
 *
 * Run by .ci/run after `npm test`; locally `npm run test:pack`. Prints one line per check
 * and "pack smoke: N passed, N failed"; exits 1 if any failed.
 */
/* global fetch, clearTimeout */
import { execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const requireFromRoot = createRequire(join(root, "package.json"));
// Outside the repository, so nothing resolves through its node_modules by accident.
const work = mkdtempSync(join(tmpdir(), "herdless-pack-"));
const app = join(work, "app");
const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
const SUBPATHS = ["core", "core/testing", "node", "node/redis", "cloudflare"];
// The compiler and wrangler are this repository's: they read the project they are pointed
// at (its node_modules, its tsconfig), so installing them again would only cost time.
const tsc = join(dirname(requireFromRoot.resolve("typescript/package.json")), "bin/tsc");
const wrangler = join(dirname(requireFromRoot.resolve("wrangler/package.json")), "bin/wrangler.js");
let passed = 0;
let failed = 0;

/** The dev versions this repository pins: the npm cache holds them after `npm ci`. */
const pinned = (name) => `${name}@${requireFromRoot(`${name}/package.json`).version}`;

function run(command, args, options = {}) {
  return execFileSync(command, args, { cwd: app, env, encoding: "utf8", stdio: "pipe", ...options });
}

async function check(name, body) {
  const started = Date.now();
  try {
    await body();
    passed++;
    console.log(`ok   ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (error) {
    failed++;
    const detail = error && typeof error === "object" && "stderr" in error ? `\n${error.stdout}\n${error.stderr}` : "";
    console.log(`FAIL ${name}\n     ${error instanceof Error ? error.message : String(error)}${detail}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** A tiny origin: every page cacheable for a minute; counts requests per path. */
async function startOrigin() {
  const counts = new Map();
  const server = createServer((req, res) => {
    counts.set(req.url, (counts.get(req.url) ?? 0) + 1);
    res.writeHead(200, { "content-type": "text/plain", "cache-control": "max-age=60" });
    res.end(`origin page ${req.url}\n`);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    count: (path) => counts.get(path) ?? 0,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

const ts = requireFromRoot("typescript");
const pkg = join(app, "node_modules/herdless");
/** `export type` / `void` lines naming every export of a subpath's .d.ts. */
function uses(subpath, alias) {
  const entry = join(pkg, JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")).exports[`./${subpath}`].types);
  const program = ts.createProgram([entry], { module: ts.ModuleKind.NodeNext, noEmit: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(entry)));
  const lines = [`import * as ${alias} from "herdless/${subpath}";`];
  for (const symbol of exports) {
    const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
    const name = symbol.getName();
    if (target.flags & (ts.SymbolFlags.Type | ts.SymbolFlags.Class)) {
      const params = target.declarations?.[0]?.typeParameters?.filter((p) => !p.default).length ?? 0;
      const args = params ? `<${Array(params).fill("any").join(", ")}>` : "";
      lines.push(`export type ${alias}_${name} = ${alias}.${name}${args};`);
    }
    if (target.flags & ts.SymbolFlags.Value) lines.push(`export const ${alias}_v_${name} = ${alias}.${name};`);
  }
  assert(lines.length > 3, `no exports found in ${entry}`);
  return lines.join("\n");
}
function typeProject(dir, text, types) {
  mkdirSync(join(app, dir), { recursive: true });
  writeFileSync(join(app, dir, "uses.ts"), text);
  writeFileSync(
    join(app, dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        module: "NodeNext",
        moduleResolution: "NodeNext",
        target: "ES2022",
        lib: ["ES2023"],
        types,
        strict: true,
        noEmit: true,
        skipLibCheck: false,
      },
      include: ["*.ts"],
    }),
  );
  run(process.execPath, [tsc, "-p", join(dir, "tsconfig.json")]);
}

let tarball;
await check("npm pack: dist/ only, no tests, no bench results, bin built", () => {
  const [packed] = JSON.parse(
    execFileSync("npm", ["pack", "--pack-destination", work, "--json", "--silent"], {
      cwd: root,
      env,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  tarball = join(work, packed.filename);
  const files = packed.files.map((f) => f.path);
  const stray = files.filter((f) => /\.test\.|(^|\/)(test|bench|fixtures|scripts|src)\//.test(f));
  assert(stray.length === 0, `the tarball carries ${stray.join(", ")}`);
  assert(files.includes("dist/node/bin.js"), "dist/node/bin.js is missing");
  for (const subpath of SUBPATHS)
    assert(
      files.some((f) => f.startsWith(`dist/${subpath.split("/")[0]}/`)),
      subpath,
    );
  console.log(`     ${packed.filename}: ${files.length} files, ${(packed.size / 1024).toFixed(0)} KB packed`);
});

await check("publint --strict and attw (are the types wrong?) pass on the package", () => {
  const bin = (name) => join(root, "node_modules/.bin", name);
  // dist/ is the one `npm pack` just built: lint it as it is, without packing again.
  run(bin("publint"), ["--strict", "--pack", "false"], { cwd: root });
  run(bin("attw"), [tarball, "--profile", "esm-only"], { cwd: root });
});

await check("installs into a fresh project from the tarball (ioredis not installed)", () => {
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  const dev = ["@types/node", "@cloudflare/workers-types", "vitest"].map(pinned);
  run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", tarball, ...dev]);
  assert(!existsSync(join(app, "node_modules/ioredis")), "ioredis was installed: it must be an optional peer");
  assert(!existsSync(join(app, "node_modules/tsx")), "tsx was installed: the CLI must need no runtime compiler");
});

await check("(a) every subpath imports from plain Node ESM", () => {
  writeFileSync(
    join(app, "imports.mjs"),
    `import * as core from "herdless/core";
import * as node from "herdless/node";
import * as testing from "herdless/core/testing";
if (typeof core.Engine !== "function" || typeof core.parseConfig !== "function") throw new Error("herdless/core");
if (typeof node.createHandler !== "function" || typeof node.startServer !== "function") throw new Error("herdless/node");
if (typeof testing.storeConformance !== "function") throw new Error("herdless/core/testing");
// herdless/cloudflare imports cloudflare:workers, which only workerd provides: it must
// resolve to built JavaScript here; (d) imports it for real inside a Worker.
const cloudflare = new URL(import.meta.resolve("herdless/cloudflare"));
if (!cloudflare.pathname.endsWith("/dist/cloudflare/index.js")) throw new Error(cloudflare.href);
`,
  );
  run(process.execPath, ["imports.mjs"]);
});

await check("(a) a store author runs herdless/core/testing with their own vitest", () => {
  writeFileSync(
    join(app, "store.test.mjs"),
    `import { LruStore, ManualClock } from "herdless/core";
import { storeConformance } from "herdless/core/testing";
storeConformance("a store from the package", async () => {
  const clock = new ManualClock(1_700_000_000_000);
  return { clock, store: new LruStore({ maxBytes: 64 * 1024 * 1024, clock }) };
});
`,
  );
  const out = run("npx", ["vitest", "run", "store.test.mjs", "--reporter=dot"]);
  // vitest exits non-zero (and run throws) when a test fails; a run of no test says so.
  assert(/passed/.test(out) && !/No test files found/.test(out), out);
});

await check("(b) every public export type-checks with module NodeNext", () => {
  // Without ioredis: herdless/node must not need its types.
  typeProject("types-node", [uses("core", "core"), uses("core/testing", "testing"), uses("node", "node")].join("\n"), [
    "node",
  ]);
  typeProject("types-workers", uses("cloudflare", "cloudflare"), ["@cloudflare/workers-types"]);
});

await check("(c) npx herdless --help", () => {
  assert(run("npx", ["herdless", "--help"]).includes("usage:"), "no usage text");
});

// The installed command itself (npx would stand between it and the signal).
await check("(c) the herdless command serves a request, caches it, and exits 0 on SIGTERM", async () => {
  const origin = await startOrigin();
  const bin = join(app, "node_modules/.bin/herdless");
  const child = spawn(bin, ["--origin", origin.url, "--port", "0", "--log-level", "info"], {
    cwd: app,
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  try {
    const url = await new Promise((resolve, reject) => {
      let seen = "";
      const timer = setTimeout(() => reject(new Error(`no "herdless listening" within 20 s:\n${seen}`)), 20_000);
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk) => {
        seen += chunk;
        const match = /"herdless listening"[^\n]*"url":"([^"]+)"/.exec(seen);
        if (!match) return;
        clearTimeout(timer);
        resolve(match[1]);
      });
      child.once("exit", (code) => reject(new Error(`exited ${code}:\n${seen}`)));
    });
    const first = await fetch(`${url}/page`);
    assert(first.status === 200 && (await first.text()) === "origin page /page\n", `first: ${first.status}`);
    const second = await fetch(`${url}/page`);
    await second.text();
    assert(
      /^herdless; hit/.test(second.headers.get("cache-status") ?? ""),
      `second: ${second.headers.get("cache-status")}`,
    );
    assert(origin.count("/page") === 1, `origin saw ${origin.count("/page")} requests`);
  } finally {
    const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    const code = await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve("timeout"), 10_000))]);
    await origin.close();
    assert(code === 0, `after SIGTERM: exit ${code}`);
  }
});

await check("(c) --redis without ioredis: exit 2 naming the package to install", () => {
  try {
    run("npx", ["herdless", "--origin", "http://127.0.0.1:9", "--redis", "redis://127.0.0.1:9"]);
  } catch (error) {
    assert(error.status === 2, `exit ${error.status}`);
    assert(error.stderr.includes("npm install ioredis"), error.stderr);
    return;
  }
  throw new Error("herdless started without ioredis");
});

await check("(c) check-config --redis without ioredis: exit 2 naming the package, as serving would", () => {
  try {
    run("npx", ["herdless", "check-config", "--origin", "http://127.0.0.1:9", "--redis", "redis://127.0.0.1:9"]);
  } catch (error) {
    assert(error.status === 2, `exit ${error.status}`);
    assert(error.stderr.includes("npm install ioredis"), error.stderr);
    return;
  }
  throw new Error("check-config passed --redis without ioredis");
});

await check("herdless/node/redis imports and type-checks once ioredis is installed", () => {
  run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", pinned("ioredis")]);
  writeFileSync(
    join(app, "redis.mjs"),
    `import { redisStack, RedisConnection } from "herdless/node/redis";
if (typeof redisStack !== "function" || typeof RedisConnection !== "function") throw new Error("herdless/node/redis");
`,
  );
  run(process.execPath, ["redis.mjs"]);
  typeProject("types-redis", uses("node/redis", "redis"), ["node"]);
});

await check("(c) examples/embed-node: herdless on /blog/* of a node:http server", async () => {
  cpSync(join(root, "examples/embed-node/server.js"), join(app, "embed-node/server.js"));
  const origin = await startOrigin();
  const { start } = await import(pathToFileURL(join(app, "embed-node/server.js")).href);
  const server = await start({ originUrl: origin.url, port: 0 });
  try {
    for (let i = 0; i < 3; i++) await (await fetch(`${server.url}/blog/post`)).text();
    assert(origin.count("/blog/post") === 1, `origin saw ${origin.count("/blog/post")} requests for /blog/post`);
    const own = await fetch(`${server.url}/about`);
    assert((await own.text()).includes("own answer"), "the server's own path");
  } finally {
    await server.close();
    await origin.close();
  }
});

const worker = join(app, "worker");
await check("(d) examples/embed-worker type-checks and builds with wrangler deploy --dry-run", () => {
  mkdirSync(worker);
  for (const file of ["wrangler.jsonc", "tsconfig.json", "src"])
    cpSync(join(root, "examples/embed-worker", file), join(worker, file), { recursive: true });
  run(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: worker });
  run(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", "dist"], { cwd: worker });
  assert(existsSync(join(worker, "dist/index.js")), "no dist/index.js");
});

await check(
  "(d) the built Worker answers /blog/* through herdless and the rest itself; its stats are the deployment's",
  async () => {
    const { Miniflare } = requireFromRoot("miniflare");
    const origin = await startOrigin();
    const mf = new Miniflare({
      modules: true,
      scriptPath: join(worker, "dist/index.js"),
      modulesRoot: join(worker, "dist"),
      compatibilityDate: "2026-04-20",
      cf: false,
      bindings: { ORIGIN_URL: origin.url, HERDLESS_CONFIG: "", HERDLESS_ADMIN_TOKEN: "pack-smoke-admin-token" },
      durableObjects: {
        COORDINATOR: { className: "KeyCoordinatorObject", useSQLite: true },
        GUARD: { className: "OriginGuardObject", useSQLite: true },
        PURGES: { className: "PurgeRegistryObject", useSQLite: true },
        STATS: { className: "StatsObject", useSQLite: true },
      },
    });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await mf.dispatchFetch("http://example.test/blog/post");
        const body = await res.text();
        assert(res.status === 200, `blog: ${res.status} ${body}`);
      }
      assert(origin.count("/blog/post") === 1, `origin saw ${origin.count("/blog/post")} requests for /blog/post`);
      const own = await mf.dispatchFetch("http://example.test/about");
      assert((await own.text()).includes("own answer"), "the Worker's own path");
      assert(origin.count("/about") === 0, "the Worker's own path went to the origin");
      // The re-exported StatsObject sums the deployment's counters: the stats say so.
      const stats = await mf.dispatchFetch("http://example.test/__herdless/stats", {
        headers: { authorization: "Bearer pack-smoke-admin-token" },
      });
      const snapshot = await stats.json();
      assert(stats.status === 200 && snapshot.scope?.of === "deployment", `stats: ${JSON.stringify(snapshot.scope)}`);
      assert(snapshot.requests === 3, `stats counted ${snapshot.requests} requests, not 3`);
    } finally {
      await mf.dispose();
      await origin.close();
    }
  },
);

rmSync(work, { recursive: true, force: true });
console.log(`pack smoke: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
