// valibot, not zod/mini, because every Worker isolate parses the bundle at start: zod/mini was
// 30.9 KB of the 244,142 B Worker bundle, valibot's part is 6.3 KB (221,866 B in all; parse,
// link and evaluate 14.7 → 8.2 CPU ms; bench/README.md). The schema was written for zod, and
// the operator-facing messages, the fields they name and which rules still run after a failure
// are kept as they were: the pieces below make valibot keep them. In valibot, a failed check
// lets the field's later checks and the rules across fields run; a wrong type (an untyped
// dataset) stops both, and so does an `abortive` check.
import * as v from "valibot";

type Issue = v.BaseIssue<unknown>;
type Dataset = { typed: boolean; value: unknown; issues?: Issue[] };

/** How a message names a value's type: `string`, `NaN`, `Infinity`, `array`, `null`, a class's name. */
function typeName(input: unknown): string {
  if (typeof input === "number") return Number.isFinite(input) ? "number" : String(input);
  if (input === null) return "null";
  if (Array.isArray(input)) return "array";
  if (typeof input === "object" && Object.getPrototypeOf(input) !== Object.prototype && "constructor" in input) {
    const name = (input.constructor as { name?: string } | undefined)?.name;
    if (input.constructor) return String(name);
  }
  return typeof input;
}

/** The message for a value of another type: `Invalid input: expected boolean, received string`. */
const wrongType =
  (expected: string) =>
  (issue: Issue): string =>
    `Invalid input: expected ${expected}, received ${typeName(issue.input)}`;

export const boolean = () => v.boolean(wrongType("boolean"));
export const string = (message: v.ErrorMessage<Issue> = wrongType("string")) => v.string(message);
export const array = <T extends v.GenericSchema>(item: T) => v.array(item, wrongType("array"));
/** A finite number: `Infinity` and `NaN` are the wrong type, not numbers out of range. */
export const number = (message: v.ErrorMessage<Issue> = wrongType("number")) =>
  v.custom<number>((input) => typeof input === "number" && Number.isFinite(input), message);
export const picklist = <const T extends readonly [string, ...string[]]>(options: T) =>
  v.picklist(options, `Invalid option: expected one of ${options.map((o) => `"${o}"`).join("|")}`);

/** A check whose failure also stops the field's later checks and the rules across fields, as a wrong type does. */
export function abortive<T extends v.GenericValidation>(action: T): T {
  return {
    ...action,
    "~run"(dataset: Dataset, config: v.Config<Issue>) {
      const before = dataset.issues?.length ?? 0;
      const result = (action["~run"] as (d: Dataset, c: v.Config<Issue>) => Dataset)(dataset, config);
      if ((result.issues?.length ?? 0) > before) result.typed = false;
      return result;
    },
  };
}

/** A whole number (stops the field's other checks when not) within the safe range. */
export const integer = (message?: string) => abortive(v.integer(message ?? wrongType("int")));
export const safeInteger = (message?: string) =>
  v.check<number, v.ErrorMessage<v.CheckIssue<number>>>(
    Number.isSafeInteger,
    message ??
      ((issue) =>
        issue.input > 0
          ? `Too big: expected int to be <=${Number.MAX_SAFE_INTEGER}`
          : `Too small: expected int to be >=${Number.MIN_SAFE_INTEGER}`),
  );

/**
 * A bound on a string's length in code points. It also runs on a value of the wrong type that
 * has a length (an array), so such a value is told both.
 */
export const lengthAtLeast = (min: number, message?: string) =>
  v.rawCheck<string>(({ dataset, addIssue }) => {
    const length = lengthOf(dataset.value);
    if (length === undefined || length >= min) return;
    const what = Array.isArray(dataset.value) ? "array" : typeof dataset.value === "string" ? "string" : "unknown";
    const unit = { array: " items", string: " characters", unknown: "" }[what];
    addIssue({ message: message ?? `Too small: expected ${what} to ${unit ? "have" : "be"} >=${min}${unit}` });
  });
export const lengthAtMost = (max: number, message: string) =>
  v.rawCheck<string>(({ dataset, addIssue }) => {
    const length = lengthOf(dataset.value);
    if (length !== undefined && !(length <= max)) addIssue({ message });
  });

function lengthOf(value: unknown): number | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === "string") return [...value].length;
  return (value as { length?: number }).length;
}

/**
 * An absolute http(s) URL: `http://` or `https://` and what the URL parser reads. Surrounding
 * spaces are dropped, and tabs and line breaks, which the parser ignores, are taken out.
 */
export const httpUrl = (message: string) =>
  v.rawCheck<string>(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const trimmed = dataset.value.trim();
    if (!/^https?:\/\//i.test(trimmed) || !URL.canParse(trimmed)) addIssue({ message });
    else (dataset as Dataset).value = trimmed.replace(/[\t\n\r]/g, "");
  });

/** An issue naming every key an object does not know, which lets the rules across fields still run. */
export interface UnknownKeysIssue extends Issue {
  readonly type: "unknown_keys";
  readonly keys: string[];
}

/**
 * An object of these fields and no other. Unlike valibot's own: a field left out is checked as
 * `undefined` (a required one gets its own message), an array is not an object, and every
 * unknown key is named at once, in an issue that does not stop the rules across fields.
 */
export function strictObject<const E extends v.ObjectEntries>(entries: E): v.StrictObjectSchema<E, undefined> {
  const schema = v.strictObject(entries);
  type Run = (typeof schema)["~run"];
  const run = (dataset: Dataset, config: v.Config<Issue>): Dataset => {
    const input = dataset.value;
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      const message = wrongType("object")({ input } as Issue);
      const issue: Issue = { kind: "schema", type: "strict_object", input, expected: "Object", received: "", message };
      return { typed: false, value: input, issues: [issue] };
    }
    const fields = input as Record<string, unknown>;
    const output: Record<string, unknown> = {};
    const issues: Issue[] = [];
    let typed = true;
    for (const key in entries) {
      const value = fields[key];
      const result = (entries[key]!["~run"] as (d: Dataset, c: v.Config<Issue>) => Dataset)(
        { typed: false, value },
        config,
      );
      for (const issue of result.issues ?? []) {
        const at: v.IssuePathItem = { type: "object", origin: "value", input: fields, key, value };
        issues.push({ ...issue, path: [at, ...(issue.path ?? [])] });
      }
      typed &&= result.typed;
      if (key in fields || result.value !== undefined) output[key] = result.value;
    }
    const unknown: string[] = [];
    for (const key in fields) if (!Object.hasOwn(entries, key)) unknown.push(key);
    if (unknown.length) {
      const message = `Unrecognized key${unknown.length > 1 ? "s" : ""}: ${unknown.map((k) => `"${k}"`).join(", ")}`;
      const issue: UnknownKeysIssue = {
        kind: "validation",
        type: "unknown_keys",
        input,
        expected: null,
        received: "",
        message,
        keys: unknown,
      };
      issues.push(issue);
    }
    return issues.length ? { typed, value: output, issues } : { typed, value: output };
  };
  return {
    ...schema,
    "~run": run as unknown as Run,
    "~standard": {
      ...schema["~standard"],
      validate: (value) => run({ typed: false, value }, v.getGlobalConfig()) as never,
    },
  };
}

/** The path items of an issue a rule across fields raises on the field at `keys`. */
export function pathTo(root: unknown, keys: (string | number)[]): [v.IssuePathItem, ...v.IssuePathItem[]] {
  let input = root;
  return keys.map((key) => {
    const value = (input as Record<string | number, unknown> | undefined)?.[key];
    const item: v.IssuePathItem = { type: "unknown", origin: "value", input, key, value };
    input = value;
    return item;
  }) as [v.IssuePathItem, ...v.IssuePathItem[]];
}
