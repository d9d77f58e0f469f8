import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { parseConfig, type Config } from "../core/config.ts";
import { isHerdlessError } from "../core/errors.ts";
import { jsonLogger, type LogLevel } from "./logger.ts";
import { startServer } from "./server.ts";
import { localStack, type Stack } from "./stack.ts";

const USAGE = `usage:
  herdless --origin http://127.0.0.1:8080 [--port 8787] [--host 127.0.0.1] [--redis redis://127.0.0.1:6379] [--log-level info]
  herdless --config herdless.config.json [flags override the file]
  herdless check-config [--config FILE] [--origin URL]   print the effective config and exit`;

interface CliFlags {
  config?: string;
  origin?: string;
  port?: string;
  host?: string;
  redis?: string;
  "admin-token"?: string;
  "log-level"?: string;
  help?: boolean;
}

/** Reads flags and the config file into a validated config; flags override the file. */
export async function loadConfig(flags: CliFlags, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  let input: Record<string, unknown> = {};
  if (flags.config) {
    const text = await readFile(flags.config, "utf8").catch((error: unknown) => {
      throw new Error(`cannot read --config ${flags.config}: ${error instanceof Error ? error.message : String(error)}`);
    });
    try {
      input = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      throw new Error(`--config ${flags.config} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  const section = (name: string) => ({ ...((input[name] as Record<string, unknown> | undefined) ?? {}) });
  const origin = section("origin");
  if (flags.origin) origin.url = flags.origin;
  if (origin.url === undefined) throw new Error("no origin configured: pass --origin http://HOST:PORT or set origin.url in --config");
  const admin = section("admin");
  const token = flags["admin-token"] ?? env.HERDLESS_ADMIN_TOKEN;
  if (token) admin.token = token;
  const log = section("log");
  if (flags["log-level"]) log.level = flags["log-level"];
  return parseConfig({ ...input, origin, admin, log });
}

export async function main(argv: string[]): Promise<number> {
  const command = argv[0] === "check-config" ? "check-config" : "serve";
  const { values } = parseArgs({
    args: command === "serve" ? argv : argv.slice(1),
    options: {
      config: { type: "string", short: "c" },
      origin: { type: "string" },
      port: { type: "string", short: "p" },
      host: { type: "string" },
      redis: { type: "string" },
      "admin-token": { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const config = await loadConfig(values);
  if (command === "check-config") {
    process.stdout.write(`${JSON.stringify({ ...config, admin: { token: config.admin.token ? "(set)" : undefined } }, null, 2)}\n`);
    return 0;
  }
  const port = values.port === undefined ? 8787 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be an integer from 0 to 65535, got ${values.port}`);
  const logger = jsonLogger(config.log.level as LogLevel);
  const stack: Stack = values.redis ? await fleetStack(config, logger, values.redis) : localStack({ config, logger });
  const running = await startServer({ stack, logger, port, host: values.host ?? "127.0.0.1" });
  logger.info("herdless listening", { url: running.url, origin: config.origin.url, mode: stack.mode() });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info("shutting down", { signal });
      void running.close().then(resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return 0;
}

async function fleetStack(config: Config, logger: ReturnType<typeof jsonLogger>, redisUrl: string): Promise<Stack> {
  const { redisStack } = await import("./fleet-stack.ts");
  return redisStack({ config, logger, redisUrl });
}

export async function run(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (error) {
    const message = isHerdlessError(error) || error instanceof Error ? error.message : String(error);
    process.stderr.write(`herdless: ${message}\n\n${USAGE}\n`);
    process.exitCode = 2;
  }
}
