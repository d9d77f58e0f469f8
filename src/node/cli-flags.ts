import { isIP } from "node:net";
import { parseArgs } from "node:util";

export interface CliFlags {
  config?: string;
  origin?: string;
  port?: string;
  host?: string;
  redis?: string;
  "admin-token"?: string;
  "log-level"?: string;
  "access-log"?: boolean;
  help?: boolean;
}

/** A mistake in the flags: reported with the usage, exit code 2. */
export class UsageError extends Error {}

const OPTIONS = {
  config: { type: "string", short: "c" },
  origin: { type: "string" },
  port: { type: "string", short: "p" },
  host: { type: "string" },
  redis: { type: "string" },
  "admin-token": { type: "string" },
  "log-level": { type: "string" },
  "access-log": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * The command line's flags. A flag given an empty value is refused, never read as unset: an
 * unset shell variable (`--host "$HOST"`) would otherwise bind every interface, or drop
 * `--redis` and run a lone process with the whole origin.maxConcurrency.
 */
export function readFlags(args: string[]): CliFlags {
  const values = parsedFlags(args);
  for (const [name, value] of Object.entries(values))
    if (value === "") throw new UsageError(`--${name} is empty (an unset variable?): give it a value or leave it out`);
  return values;
}

function parsedFlags(args: string[]): CliFlags {
  try {
    const { values, positionals } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true });
    if (positionals.length > 0)
      throw new UsageError(`unknown command or argument "${positionals[0]}" (commands: check-config)`);
    return values;
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as { code?: string }).code;
    const accepted = Object.keys(OPTIONS)
      .map((name) => `--${name}`)
      .join(", ");
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      const flag = /'([^']+)'/.exec((error as Error).message)?.[1] ?? "?";
      throw new UsageError(`unknown flag ${flag}; accepted: ${accepted}`);
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      const flag = /'(-[^' ,]+)/.exec((error as Error).message)?.[1];
      // parseArgs takes `--port -1` for a flag with no value: say how to pass one that starts with "-".
      const dashed = (error as Error).message.includes("ambiguous") ? ` (one starting with - goes as ${flag}=-…)` : "";
      throw new UsageError(flag ? `${flag} needs a value${dashed}` : (error as Error).message);
    }
    throw error;
  }
}

/**
 * Where to listen, from `--port` (decimal digits, 0 to 65535; 0 asks the system for any free
 * port, which the "herdless listening" line names) and `--host` (a host name or an IP
 * address; 127.0.0.1 unless given; `_` allowed, as container names carry it). `Number()`
 * alone read `0x2710` and `1e4` as 10000.
 */
export function listenFlags(flags: CliFlags): { port: number; host: string } {
  const port = flags.port === undefined ? 8787 : Number(flags.port);
  if (flags.port !== undefined && (!/^\d{1,5}$/.test(flags.port) || port > 65535))
    throw new UsageError(
      `--port must be an integer from 0 to 65535 in decimal digits (0: any free port), got ${JSON.stringify(flags.port)}`,
    );
  const host = flags.host ?? "127.0.0.1";
  if (!isIP(host) && !/^(?=.{1,253}$)[\w](?:[\w-]*[\w])?(?:\.[\w](?:[\w-]*[\w])?)*\.?$/.test(host))
    throw new UsageError(
      `--host must be a host name or an IP address such as 127.0.0.1, ::1 or 0.0.0.0, got ${JSON.stringify(host)}`,
    );
  return { port, host };
}

/** A listen failure the operator's `--host` caused (a name that does not resolve, an address not on this machine). */
export function hostListenError(error: unknown, host: string): UsageError | undefined {
  const code = (error as { code?: string } | null)?.code;
  if (code !== "ENOTFOUND" && code !== "EAI_AGAIN" && code !== "EADDRNOTAVAIL" && code !== "EAI_NONAME")
    return undefined;
  const why = code === "EADDRNOTAVAIL" ? "is not an address of this machine" : "does not resolve to an address";
  return new UsageError(`--host ${JSON.stringify(host)} ${why} (${code}): give an IP address or a local host name`);
}
