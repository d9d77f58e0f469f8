import { parseConfig, type Config } from "../core/config.ts";
import { WORKER_FILL_BUDGET_BYTES } from "../core/config/fields.ts";
import { HerdlessError, isHerdlessError } from "../core/errors.ts";
import { namingSources } from "../core/config/messages.ts";

/** The variables every herdless object reads its config from (a part of {@link Env}). */
export interface ConfigEnv {
  /** The origin every cache miss goes to, for example `https://origin.example.com`. */
  ORIGIN_URL: string;
  /**
   * Optional herdless config: a JSON string, or the object itself (wrangler passes a var
   * written as a JSON object in wrangler.jsonc as one); `origin.url` defaults to ORIGIN_URL.
   */
  HERDLESS_CONFIG?: string | object;
}

/**
 * The text of what the config comes from, to tell when it changed: the object form of
 * HERDLESS_CONFIG as its JSON (a string of it would read `[object Object]` for every config).
 */
export function configSignature(env: ConfigEnv): string {
  const raw = env.HERDLESS_CONFIG;
  if (typeof raw !== "object" || raw === null) return `${env.ORIGIN_URL}\n${String(raw ?? "")}`;
  let text = objectTexts.get(raw);
  if (text === undefined) objectTexts.set(raw, (text = JSON.stringify(raw)));
  return `${env.ORIGIN_URL}\n${text}`;
}

/** The JSON of an object HERDLESS_CONFIG, written once: workerd hands every request the same env. */
const objectTexts = new WeakMap<object, string>();

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
  const signature = configSignature(env);
  if (parsed?.signature === signature) return parsed.config;
  const config = parseEnvConfig(env);
  parsed = { signature, config };
  return config;
}

function parseEnvConfig(env: ConfigEnv): Config {
  const record = envConfigObject(env.HERDLESS_CONFIG);
  if (
    record.origin !== undefined &&
    (typeof record.origin !== "object" || record.origin === null || Array.isArray(record.origin))
  )
    // Dropped before: {"origin":"http://10.0.0.5"} ran against ORIGIN_URL with every origin default.
    throw new HerdlessError(
      "CONFIG_INVALID",
      `HERDLESS_CONFIG: origin must be an object such as {"maxConcurrency":4} (the origin's URL goes in ORIGIN_URL or origin.url), got ${JSON.stringify(record.origin)}`,
    );
  const origin = (record.origin ?? {}) as Record<string, unknown>;
  // ORIGIN_URL is the deploy-time knob (`--var ORIGIN_URL:…`), so it wins over the JSON.
  const fromVar = env.ORIGIN_URL !== undefined && env.ORIGIN_URL !== "";
  const url = fromVar ? env.ORIGIN_URL : origin.url;
  try {
    return withIsolateDefaults(parseConfig({ ...record, origin: { ...origin, url } }));
  } catch (error) {
    // The operator set ORIGIN_URL, not origin.url: the message names what they wrote.
    if (!fromVar || !isHerdlessError(error, "CONFIG_INVALID")) throw error;
    throw namingSources(error, [["origin.url", "ORIGIN_URL"]]);
  }
}

/**
 * What differs on a Worker isolate (128 MB for everything it runs): the fill budget is not a
 * quarter of `cache.maxBytes` (a Node process's cache, 256 MiB by default) but
 * {@link WORKER_FILL_BUDGET_BYTES}, unless the operator set one.
 */
function withIsolateDefaults(config: Config): Config {
  if (config.cache.fillBudgetBytes !== undefined) return config;
  return { ...config, cache: { ...config.cache, fillBudgetBytes: WORKER_FILL_BUDGET_BYTES } };
}

/** HERDLESS_CONFIG as the object it must be: parsed from its JSON text, or given as one. */
function envConfigObject(raw: unknown): Record<string, unknown> {
  let input: unknown = raw;
  if (raw === undefined || (typeof raw === "string" && raw.trim() === "")) return {};
  if (typeof raw === "string") {
    try {
      input = JSON.parse(raw);
    } catch (cause) {
      throw new HerdlessError("CONFIG_INVALID", "HERDLESS_CONFIG must be a JSON object (it is not valid JSON)", {
        cause,
      });
    }
  }
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new HerdlessError(
      "CONFIG_INVALID",
      `HERDLESS_CONFIG must be a JSON object such as {"origin":{"maxConcurrency":4}}, got ${typeof raw === "string" ? "JSON text of" : "a var of type"} ${Array.isArray(input) ? "array" : input === null ? "null" : typeof input}`,
    );
  }
  return input as Record<string, unknown>;
}
