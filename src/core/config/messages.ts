import type * as z from "zod/mini";

/**
 * One operator-readable line per issue: the field's path, what is wrong, the value given;
 * for a misspelled option, the accepted ones and a "did you mean".
 */
export function describeIssue(issue: z.core.$ZodIssue, input: unknown, schema: z.core.$ZodType): string {
  const path = issue.path.map(String).join(".") || "(root)";
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(schema, issue.path);
    return issue.keys
      .map((key) => {
        const suggestion = closest(key, known);
        const where = path === "(root)" ? key : `${path}.${key}`;
        return `${where}: unknown option${suggestion ? ` (did you mean "${suggestion}"?)` : ""}; accepted: ${known.join(", ")}`;
      })
      .join("\n  - ");
  }
  const value = valueAt(input, issue.path);
  // A rule across fields (lockLeaseMs > timeoutMs) can fail on a field left to its default: not "missing".
  // A secret is described, never repeated: the message goes to a terminal, a log, a Worker's 500 page.
  const secret = issue.path.at(-1) === "token" && typeof value === "string";
  const described = secret ? `${value.length} characters` : JSON.stringify(value);
  const shown = value !== undefined ? described : issue.code === "custom" ? "its default" : "missing";
  // A URL's credentials are not repeated: the message may reach a log or a Worker's 500 page.
  return `${path}: ${issue.message} (got ${shown.replace(/(\/\/)[^/?#@"\s]*@/g, "$1…@")})`;
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let node = input;
  for (const part of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}

function knownKeys(root: z.core.$ZodType, path: PropertyKey[]): string[] {
  let schema: z.core.$ZodType | undefined = root;
  for (const part of path) {
    const def: z.core.$ZodTypeDef | undefined = unwrap(schema)?._zod.def;
    if (def?.type === "array") schema = (def as z.core.$ZodArrayDef).element;
    else if (def?.type === "object") schema = (def as z.core.$ZodObjectDef).shape[part as string];
  }
  const def = unwrap(schema)?._zod.def;
  return def?.type === "object" ? Object.keys((def as z.core.$ZodObjectDef).shape) : [];
}

/** The schema under defaults, optionals and pipes: the one whose shape an operator writes. */
export function unwrap(schema: z.core.$ZodType | undefined): z.core.$ZodType | undefined {
  let current = schema;
  for (;;) {
    const def = current?._zod.def as { innerType?: z.core.$ZodType; in?: z.core.$ZodType; type: string } | undefined;
    if (def?.innerType) current = def.innerType;
    else if (def?.type === "pipe" && def.in) current = def.in;
    else return current;
  }
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
