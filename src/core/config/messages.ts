import type * as v from "valibot";
import { HerdlessError } from "../errors.ts";
import type { UnknownKeysIssue } from "./checks.ts";

/**
 * One operator-readable line per issue: the field's path, what is wrong, the value given;
 * for a misspelled option, the accepted ones and a "did you mean".
 */
export function describeIssue(issue: v.BaseIssue<unknown>, input: unknown, schema: v.GenericSchema): string {
  const keys = (issue.path ?? []).map((item) => item.key as PropertyKey);
  const path = keys.map(String).join(".") || "(root)";
  if (issue.type === "unknown_keys") {
    const known = knownKeys(schema, keys);
    return (issue as UnknownKeysIssue).keys
      .map((key) => {
        const suggestion = closest(key, known);
        const where = path === "(root)" ? key : `${path}.${key}`;
        return `${where}: unknown option${suggestion ? ` (did you mean "${suggestion}"?)` : ""}; accepted: ${known.join(", ")}`;
      })
      .join("\n  - ");
  }
  const value = valueAt(input, keys);
  // A rule across fields (lockLeaseMs > timeoutMs) can fail on a field left to its default: not "missing".
  // A secret is described, never repeated: the message goes to a terminal, a log, a Worker's 500 page.
  // Whatever its type: a token written as a number or a list is still the operator's secret.
  const secret = keys.includes("token");
  // JSON.stringify says null for Infinity and NaN (JSON's 1e400 parses as Infinity): the value, as it is.
  const described = secret
    ? secretShape(value)
    : typeof value === "number" && !Number.isFinite(value)
      ? String(value)
      : JSON.stringify(value);
  // (A rule: a check written for this schema, not one of a type, bound or length.)
  const rule = issue.type === "check" || issue.type === "raw_check";
  const shown = value !== undefined ? described : rule ? "its default" : "missing";
  // A URL's credentials are not repeated: the message may reach a log or a Worker's 500 page.
  return `${path}: ${issue.message} (got ${shown.replace(/(\/\/)[^/?#@"\s]*@/g, "$1…@")})`;
}

/** A secret's shape, not its value: its length in characters, or its type. */
function secretShape(value: unknown): string {
  if (typeof value === "string") return `${value.length} characters`;
  if (Array.isArray(value)) return "a list";
  return value === null ? "null" : `a ${typeof value}`;
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let node = input;
  for (const part of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}

function knownKeys(root: v.GenericSchema, path: PropertyKey[]): string[] {
  let schema: v.GenericSchema | undefined = root;
  for (const part of path) {
    const inner = unwrap(schema);
    if (inner?.type === "array") schema = (inner as v.ArraySchema<v.GenericSchema, undefined>).item;
    else if (isObject(inner)) schema = inner.entries[part as string];
  }
  const inner = unwrap(schema);
  return isObject(inner) ? Object.keys(inner.entries) : [];
}

/** The schema under defaults and optionals: the one whose shape an operator writes (a pipe is its first schema's). */
export function unwrap(schema: v.GenericSchema | undefined): v.GenericSchema | undefined {
  let current = schema;
  while (current && "wrapped" in current) current = current.wrapped as v.GenericSchema;
  return current;
}

/** Whether `schema` is an object of named fields. */
export function isObject(
  schema: v.GenericSchema | undefined,
): schema is v.StrictObjectSchema<v.ObjectEntries, undefined> {
  return schema?.type === "strict_object";
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = levenshtein(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * A CONFIG_INVALID `error` whose lines about a field the operator set under another name (a
 * flag, an environment variable: `[field, name]`, name undefined when the field was set as
 * itself) name that instead: `HERDLESS_ADMIN_TOKEN=short` is told about `HERDLESS_ADMIN_TOKEN`,
 * not `admin.token`, a field the operator never wrote. Every such line (a value can break two
 * rules), whether or not its text starts with the field's name again.
 */
export function namingSources(error: HerdlessError, sources: readonly [string, string | undefined][]): HerdlessError {
  let message = error.message;
  for (const [field, source] of sources) {
    if (source === undefined) continue;
    const escaped = field.replace(/\./g, "\\.");
    message = message
      .replace(new RegExp(`^(\\s*- )${escaped}: ${escaped} `, "gm"), `$1${source}: ${source} `)
      .replace(new RegExp(`^(\\s*- )${escaped}: `, "gm"), `$1${source}: `);
  }
  return new HerdlessError("CONFIG_INVALID", message, { cause: error });
}
