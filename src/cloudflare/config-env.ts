import { parseConfig, type Config } from "../core/config.ts";
import { HerdlessError } from "../core/errors.ts";

/** The variables every herdless object reads its config from (a part of {@link Env}). */
export interface ConfigEnv {
  /** The origin every cache miss goes to, for example `https://origin.example.com`. */
  ORIGIN_URL: string;
  /** Optional herdless config as a JSON string; `origin.url` defaults to ORIGIN_URL. */
  HERDLESS_CONFIG?: string;
}

/** The last config parsed in this isolate, by the variables it came from: the edge and every object share it. */
let parsed: { signature: string; config: Config } | undefined;

/**
 * The herdless config of a deployment: HERDLESS_CONFIG overlaid with ORIGIN_URL, validated
 * once per isolate (per value of the two variables). Throws CONFIG_INVALID naming the
 * variable when either is wrong.
 *
 * @example
 * const config = configFromEnv({ ...env, ORIGIN_URL: "http://127.0.0.1:8080" });
 */
export function configFromEnv(env: ConfigEnv): Config {
  const signature = `${env.ORIGIN_URL}\n${env.HERDLESS_CONFIG ?? ""}`;
  if (parsed?.signature === signature) return parsed.config;
  const config = parseEnvConfig(env);
  parsed = { signature, config };
  return config;
}

function parseEnvConfig(env: ConfigEnv): Config {
  let input: unknown = {};
  if (env.HERDLESS_CONFIG !== undefined && env.HERDLESS_CONFIG.trim() !== "") {
    try {
      input = JSON.parse(env.HERDLESS_CONFIG);
    } catch (cause) {
      throw new HerdlessError("CONFIG_INVALID", "HERDLESS_CONFIG must be a JSON object (it is not valid JSON)", {
        cause,
      });
    }
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      throw new HerdlessError(
        "CONFIG_INVALID",
        'HERDLESS_CONFIG must be a JSON object such as {"origin":{"maxConcurrency":4}}',
      );
    }
  }
  const record = input as Record<string, unknown>;
  const origin =
    typeof record.origin === "object" && record.origin !== null ? (record.origin as Record<string, unknown>) : {};
  // ORIGIN_URL is the deploy-time knob (`--var ORIGIN_URL:…`), so it wins over the JSON.
  const fromVar = env.ORIGIN_URL !== undefined && env.ORIGIN_URL !== "";
  const url = fromVar ? env.ORIGIN_URL : origin.url;
  try {
    return parseConfig({ ...record, origin: { ...origin, url } });
  } catch (error) {
    // The operator set ORIGIN_URL, not origin.url: the message names what they wrote.
    if (!fromVar || !(error instanceof HerdlessError)) throw error;
    const message = error.message.replace(/^(\s*- )origin\.url: origin\.url /m, "$1ORIGIN_URL: ORIGIN_URL ");
    throw new HerdlessError("CONFIG_INVALID", message, { cause: error });
  }
}
