import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../../src/node/cli.ts";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "herdless-cli-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(name: string, content: unknown): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof content === "string" ? content : JSON.stringify(content));
  return path;
}

/** Runs the CLI in-process, capturing what it writes. */
async function runCli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await cli(argv, { stdout: (text) => void (stdout += text), stderr: (text) => void (stderr += text) });
  return { code, stdout, stderr };
}

describe("herdless CLI", () => {
  it("check-config prints the effective config: file values, defaults, and flags over the file", async () => {
    const file = await configFile("ok.json", {
      origin: { url: "http://127.0.0.1:1111", maxConcurrency: 3 },
      log: { level: "warn" },
      routes: [{ match: "/static/*", forceTtlMs: 60_000 }],
    });
    const { code, stdout, stderr } = await runCli([
      "check-config",
      "--config",
      file,
      "--origin",
      "http://127.0.0.1:2222",
      "--log-level",
      "debug",
      "--access-log",
    ]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const printed = JSON.parse(stdout) as {
      origin: { url: string; maxConcurrency: number; timeoutMs: number };
      log: { level: string; access: boolean };
      routes: unknown[];
    };
    expect(printed.origin.url).toBe("http://127.0.0.1:2222");
    expect(printed.origin.maxConcurrency).toBe(3);
    expect(printed.origin.timeoutMs).toBe(10_000);
    expect(printed.log).toEqual({ level: "debug", access: true });
    expect(printed.routes).toEqual([{ match: "/static/*", forceTtlMs: 60_000 }]);
  });

  it("check-config fills in every default, of admin and defaults too, not only what the file set there", async () => {
    const file = await configFile("partial.json", {
      origin: { url: "http://127.0.0.1:1111" },
      defaults: { defaultTtlMs: 60_000 },
      admin: { purgePropagationMs: 500 },
    });
    const { code, stdout } = await runCli(["check-config", "--config", file]);
    expect(code).toBe(0);
    const printed = JSON.parse(stdout) as Record<string, unknown>;
    // Before: "admin": {} (purgePropagationMs dropped) and "defaults": { "defaultTtlMs": 60000 } alone.
    expect(printed.admin).toEqual({ purgePropagationMs: 500, statsReportIntervalMs: 10_000 });
    expect(printed.defaults).toEqual({
      bypass: false,
      defaultTtlMs: 60_000,
      staleWhileRevalidateMs: 0,
      staleIfErrorMs: 0,
      cacheAuthorized: false,
      honorRequestNoCache: false,
      refreshAhead: 0,
      key: { ignoreQuery: ["utm_*", "fbclid", "gclid"], ignoreAllQuery: false },
      timeoutMs: 10_000,
    });
  });

  it("--help names every flag of docs/node.md's table, with its short form", async () => {
    const doc = await readFile(new URL("../../docs/node.md", import.meta.url), "utf8");
    const flags = [...doc.matchAll(/^\| `(--[a-z-]+)[^`]*`(?:, `(-[a-z])`)? /gm)].map((m) => [m[1], m[2]]);
    expect(flags.length).toBeGreaterThanOrEqual(9);
    const { code, stdout } = await runCli(["--help"]);
    expect(code).toBe(0);
    for (const [long, short] of flags) {
      // Before: --admin-token, -c, -p and -h were documented but not in --help.
      expect(stdout, long).toMatch(new RegExp(`^  ${long}\\b.*${short ? `, ${short}\\b` : ""}`, "m"));
    }
  });

  it("names the flag or environment variable the operator set in a refusal, not the config field it fills", async () => {
    const refused = async (argv: string[], envToken?: string) => {
      let stderr = "";
      const io = { stdout: () => undefined, stderr: (text: string) => void (stderr += text) };
      const saved = process.env.HERDLESS_ADMIN_TOKEN;
      if (envToken !== undefined) process.env.HERDLESS_ADMIN_TOKEN = envToken;
      try {
        return { code: await cli(argv, io), stderr };
      } finally {
        if (saved === undefined) delete process.env.HERDLESS_ADMIN_TOKEN;
        else process.env.HERDLESS_ADMIN_TOKEN = saved;
      }
    };
    // Before: "admin.token must be at least 16 characters", "origin.url must be…", "log.level: Invalid option".
    expect(await refused(["check-config", "--origin", "http://127.0.0.1:1"], "short")).toEqual({
      code: 2,
      stderr: expect.stringContaining(
        "  - HERDLESS_ADMIN_TOKEN: HERDLESS_ADMIN_TOKEN must be at least 16 characters (got 5 characters)",
      ),
    });
    const flags = ["check-config", "--origin", "ftp://x", "--admin-token", "short", "--log-level", "loud"];
    const { stderr } = await refused(flags);
    expect(stderr).toContain(
      '  - --origin: --origin must be an absolute http(s) URL such as http://127.0.0.1:8080 (got "ftp://x")',
    );
    expect(stderr).toContain("  - --admin-token: --admin-token must be at least 16 characters (got 5 characters)");
    expect(stderr).toMatch(/ {2}- --log-level: .*\(got "loud"\)/);
    expect(stderr).not.toMatch(/origin\.url|admin\.token|log\.level/);
    // The same fields set in the file keep their names.
    const file = await configFile("named.json", { origin: { url: "ftp://x" }, admin: { token: "short" } });
    const fromFile = await refused(["check-config", "--config", file]);
    expect(fromFile.stderr).toContain("  - origin.url: origin.url must be");
    expect(fromFile.stderr).toContain("  - admin.token: admin.token must be at least 16");
  });

  it("never prints the admin token", async () => {
    const { code, stdout } = await runCli([
      "check-config",
      "--origin",
      "http://127.0.0.1:2222",
      "--admin-token",
      "s3cret-s3cret-s3cret",
    ]);
    expect(code).toBe(0);
    expect(stdout).not.toContain("s3cret");
    expect(JSON.parse(stdout)).toMatchObject({ admin: { token: "(set)" } });
  });

  it("rejects an invalid config file with exit code 2, naming the field", async () => {
    const file = await configFile("bad.json", {
      origin: { url: "http://127.0.0.1:1111", maxConcurency: 3, timeoutMs: "soon" },
    });
    const { code, stdout, stderr } = await runCli(["check-config", "--config", file]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain('origin.maxConcurency: unknown option (did you mean "maxConcurrency"?)');
    expect(stderr).toContain("origin.timeoutMs: origin.timeoutMs must be a number of milliseconds");
  });

  it("rejects a file that is not JSON, or a section that is not an object, naming the file", async () => {
    const broken = await configFile("broken.json", "{ origin: ");
    expect(await runCli(["--config", broken])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining(`--config ${broken} is not valid JSON`),
    });
    const wrongShape = await configFile("shape.json", { origin: "http://127.0.0.1:1111" });
    expect(await runCli(["--config", wrongShape])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("origin must be an object"),
    });
  });

  it("refuses a config file that is not UTF-8, naming it, instead of reading U+FFFD in place of its bytes; takes one with a BOM", async () => {
    const latin1 = join(dir, "latin1.json");
    await writeFile(
      latin1,
      Buffer.concat([
        Buffer.from('{"origin":{"url":"http://127.0.0.1:1"},"cache":{"ignoreCookies":["caf'),
        Buffer.from([0xe9]),
        Buffer.from('_*"]}}'),
      ]),
    );
    expect(await runCli(["check-config", "--config", latin1])).toMatchObject({
      code: 2,
      stderr: `herdless: --config ${latin1} is not UTF-8 text: save it as UTF-8\n`,
    });
    const bom = join(dir, "bom.json");
    await writeFile(
      bom,
      `\uFEFF${JSON.stringify({ origin: { url: "http://127.0.0.1:1" }, cache: { ignoreCookies: ["café_*"] } })}`,
    );
    const { code, stdout } = await runCli(["check-config", "--config", bom]);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ cache: { ignoreCookies: ["café_*"] } });
  });

  it("rejects an unknown flag clearly, listing the accepted ones", async () => {
    const { code, stderr } = await runCli(["--origin", "http://127.0.0.1:1", "--prot", "8080"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^herdless: unknown flag --prot; accepted: --config, --origin, --port/);
    expect(stderr).toContain("usage:");
  });

  it("rejects an unknown command, a flag without its value, a bad port and a missing origin", async () => {
    expect(await runCli(["serve-please", "--origin", "http://127.0.0.1:1"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining('unknown command or argument "serve-please"'),
    });
    expect(await runCli(["--origin"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("herdless: --origin needs a value"),
    });
    expect(await runCli(["--origin", "http://127.0.0.1:1", "--port", "-1"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("herdless: --port needs a value (one starting with - goes as --port=-…)"),
    });
    expect(await runCli(["--origin", "http://127.0.0.1:1", "--port", "http"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("--port must be an integer"),
    });
    expect(await runCli(["check-config"])).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("no origin configured"),
    });
  });

  it('refuses a flag given an empty value (an unset shell variable: --port "$PORT"), naming it, in check-config too', async () => {
    // Before: --port "" listened on a random port, --host "" on every interface (cache and admin
    // API exposed), and --redis "" ran a lone process with the whole origin.maxConcurrency.
    for (const flag of ["--port", "--host", "--redis", "--log-level", "--admin-token", "--config", "--origin"]) {
      for (const command of [[], ["check-config"]]) {
        const { code, stderr } = await runCli([...command, "--origin", "http://127.0.0.1:1", flag, ""]);
        expect(code, `${flag} ""`).toBe(2);
        expect(stderr, `${flag} ""`).toContain(`herdless: ${flag} is empty`);
      }
    }
  });

  it("takes --port only in decimal digits from 0 to 65535, and --host only as a host name or an IP address, in check-config too", async () => {
    for (const port of ["0x2710", "1e4", "10000.0", " 80", "+80", "65536", "123456"]) {
      const { code, stderr } = await runCli(["check-config", "--origin", "http://127.0.0.1:1", "--port", port]);
      expect(code, port).toBe(2);
      expect(stderr, port).toContain(
        `--port must be an integer from 0 to 65535 in decimal digits (0: any free port), got ${JSON.stringify(port)}`,
      );
    }
    for (const host of ["not a host", "http://127.0.0.1", "127.0.0.1:80", "-x"]) {
      const { code, stderr } = await runCli(["check-config", "--origin", "http://127.0.0.1:1", `--host=${host}`]);
      expect(code, host).toBe(2);
      expect(stderr, host).toContain(`--host must be a host name or an IP address`);
    }
    for (const ok of [
      ["--port", "0"],
      ["--port", "65535"],
      ["--host", "::1"],
      ["--host", "localhost"],
      ["--host", "cache_1.internal"],
      ["--host", "0.0.0.0"],
    ]) {
      expect((await runCli(["check-config", "--origin", "http://127.0.0.1:1", ...ok])).code, ok.join(" ")).toBe(0);
    }
  });

  it("a --host that does not resolve exits 2 naming --host, not 1 with getaddrinfo ENOTFOUND", async () => {
    const { code, stderr } = await runCli([
      "--origin",
      "http://127.0.0.1:1",
      "--port",
      "0",
      "--host",
      "nowhere.invalid",
    ]);
    expect(code).toBe(2);
    expect(stderr).toContain('herdless: --host "nowhere.invalid" does not resolve to an address');
  });

  it("a bad --redis exits 2 naming redis, never printing its password (a malformed %-escape too, not 1 with 'URI malformed')", async () => {
    for (const redis of [
      "redis+sentinel://:hunter2%zz@10.0.0.1:26379/mymaster",
      "redis://:hunter2-hunter2@10.0.0.1:99999",
      "redis+cluster://:hunter2-hunter2@10.0.0.1:0",
    ]) {
      const { code, stderr } = await runCli(["check-config", "--origin", "http://127.0.0.1:1", "--redis", redis]);
      expect(code, redis).toBe(2);
      expect(stderr, redis).toMatch(/^herdless: redis: /);
      expect(stderr, redis).not.toContain("hunter2");
    }
  });

  it("the herdless command exits 2 on an invalid config", async () => {
    const file = await configFile("bad-level.json", {
      origin: { url: "http://127.0.0.1:1111" },
      log: { level: "loud" },
    });
    const child = spawn(process.execPath, ["--import", "tsx", "src/node/bin.ts", "--config", file], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => void (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", (exit) => resolve(exit)));
    expect(code).toBe(2);
    expect(stderr).toContain("log.level");
  });

  it("the herdless command serves in a heap sized from cache.maxBytes, unless the operator sized it; SIGTERM exits 0", async () => {
    const file = await configFile("heap.json", {
      origin: { url: "http://127.0.0.1:1111" },
      cache: { maxBytes: 64 * 2 ** 20 },
    });
    const serve = async (nodeOptions: string) => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/node/bin.ts", "--config", file, "--port", "0"], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, NODE_OPTIONS: nodeOptions },
      });
      let stderr = "";
      const listening = new Promise<{ heapLimitMiB: number }>((resolve) =>
        child.stderr.on("data", (chunk: Buffer) => {
          stderr += chunk.toString();
          const line = stderr.split("\n").find((l) => l.includes('"herdless listening"'));
          if (line) resolve(JSON.parse(line) as { heapLimitMiB: number });
        }),
      );
      const exited = new Promise<number | null>((resolve) => child.once("exit", (exit) => resolve(exit)));
      const { heapLimitMiB } = await listening;
      child.kill("SIGTERM");
      return { heapLimitMiB, code: await exited, stderr };
    };
    // 1.25 × 64 MiB + 24 MiB old generation, 24 MiB young.
    const sized = await serve("");
    expect(sized.heapLimitMiB).toBe(128);
    expect(sized.code).toBe(0);
    expect(sized.stderr).toContain('"msg":"stopped"');
    const operator = await serve("--max-old-space-size=300");
    expect(operator.heapLimitMiB).toBeGreaterThan(300);
    expect(operator.code).toBe(0);
  });
});
