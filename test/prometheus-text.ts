/**
 * A strict reader of the Prometheus text exposition format 0.0.4, for tests of both
 * runtimes' metrics endpoints: it throws, naming the line, on anything a Prometheus server
 * would reject or a linter (promtool's) would flag — bad names, labels or values, a sample
 * before its TYPE, a family split in two, a counter not named `_total`, a histogram whose
 * buckets are not cumulative or do not end in `+Inf` equal to its `_count`.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/;
const LABEL = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

export function parsePrometheusText(text: string): Map<string, Family> {
  if (!text.endsWith("\n")) throw new Error("the exposition must end with a newline");
  const families = new Map<string, Family>();
  const finished = new Set<string>();
  let current: string | undefined;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, index) => {
    const where = `line ${index + 1} (${JSON.stringify(line)})`;
    if (line === "") throw new Error(`${where}: empty line`);
    if (line.startsWith("#")) {
      const [, keyword, name, ...rest] = line.split(" ");
      if (keyword !== "HELP" && keyword !== "TYPE") return;
      if (!name || !NAME.test(name)) throw new Error(`${where}: bad metric name`);
      const family = open(name, where);
      if (keyword === "HELP") {
        if (family.help !== "") throw new Error(`${where}: second HELP for ${name}`);
        family.help = rest.join(" ");
      } else {
        const type = rest.join(" ");
        if (!TYPES.has(type)) throw new Error(`${where}: unknown type ${type}`);
        if (family.samples.length > 0) throw new Error(`${where}: TYPE after samples of ${name}`);
        family.type = type as Family["type"];
        if (type === "counter" && !name.endsWith("_total"))
          throw new Error(`${where}: counter ${name} must end in _total`);
      }
      return;
    }
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`${where}: not a sample`);
    const [, name = "", , labelText = "", valueText = ""] = match;
    const value = parseValue(valueText, where);
    const labels = parseLabels(labelText, where);
    const familyName = familyOf(name);
    const family = open(familyName, where);
    if (family.type === "untyped" && familyName !== name) throw new Error(`${where}: ${name} has no TYPE`);
    if (family.type !== "histogram" && family.type !== "summary" && familyName !== name)
      throw new Error(`${where}: suffix on a ${family.type}`);
    family.samples.push({ name, labels, value });
  });
  for (const [name, family] of families) if (family.type === "histogram") checkHistogram(name, family);
  return families;

  function familyOf(name: string): string {
    for (const suffix of ["_bucket", "_sum", "_count"]) {
      const base = name.slice(0, -suffix.length);
      if (name.endsWith(suffix) && families.get(base)?.type === "histogram") return base;
    }
    return name;
  }

  function open(name: string, where: string): Family {
    if (current !== name) {
      if (current !== undefined) finished.add(current);
      if (finished.has(name)) throw new Error(`${where}: ${name} appears in two places`);
      current = name;
    }
    let family = families.get(name);
    if (!family) families.set(name, (family = { type: "untyped", help: "", samples: [] }));
    return family;
  }
}

function parseValue(text: string, where: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`${where}: bad value ${text}`);
  return Number(text);
}

function parseLabels(text: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest.trim() !== "") {
    const match = LABEL.exec(rest);
    if (!match) throw new Error(`${where}: bad labels`);
    const [whole, name = "", value = ""] = match;
    if (!LABEL_NAME.test(name) || name.startsWith("__")) throw new Error(`${where}: bad label name ${name}`);
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    labels[name] = value.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    rest = rest.slice(whole.length);
  }
  return labels;
}

function checkHistogram(name: string, family: Family): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...others } = sample.labels;
    const id = JSON.stringify(Object.entries(others).sort());
    let one = series.get(id);
    if (!one) series.set(id, (one = { buckets: [] }));
    if (sample.name === `${name}_bucket`) {
      if (le === undefined) throw new Error(`${name}_bucket without le`);
      one.buckets.push([parseValue(le, `${name} le`), sample.value]);
    } else if (sample.name === `${name}_sum`) one.sum = sample.value;
    else if (sample.name === `${name}_count`) one.count = sample.value;
    else throw new Error(`${sample.name} in histogram ${name}`);
  }
  for (const [id, one] of series) {
    const where = `histogram ${name}${id}`;
    if (one.sum === undefined || one.count === undefined) throw new Error(`${where}: no _sum or _count`);
    one.buckets.forEach(([le, n], i) => {
      const previous = one.buckets[i - 1];
      if (previous && !(le > previous[0])) throw new Error(`${where}: le not increasing at ${le}`);
      if (previous && n < previous[1]) throw new Error(`${where}: buckets not cumulative at le=${le}`);
    });
    const last = one.buckets.at(-1);
    if (!last || last[0] !== Infinity) throw new Error(`${where}: no +Inf bucket`);
    if (last[1] !== one.count) throw new Error(`${where}: +Inf bucket ${last[1]} is not _count ${one.count}`);
  }
}

/** The value of one sample, by name and labels; throws if there is none. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  for (const family of families.values())
    for (const sample of family.samples)
      if (
        sample.name === name &&
        Object.keys(labels).length === Object.keys(sample.labels).length &&
        Object.entries(labels).every(([k, v]) => sample.labels[k] === v)
      )
        return sample.value;
  throw new Error(`no sample ${name}${JSON.stringify(labels)}`);
}
