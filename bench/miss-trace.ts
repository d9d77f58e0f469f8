/**
 * Where a request's time goes in the Worker, from the timeline the meter records inside
 * workerd (bench/worker-meter.js, `?trace=1`): for each client request, the operations its
 * handler issued (Cache API, Durable Object calls, the origin fetch, alarms), inside each
 * object call the operations that object issued, and which of them the answer waited for.
 *
 * A step is on a request's path when it settled before its caller's call ended (the handler
 * for the edge's own operations, the object's call for an object's), and its caller is on the
 * path too. A step still running when its caller returned (a Cache API write behind the
 * answer, a guard permit handed back behind it) is not on the path. For an object call,
 * `in` is the time from the caller's call to the object's method starting, `out` from the
 * method's end to the caller seeing the result (output gate and RPC return).
 *
 * Sequential hops of a request: its steps on the path, steps that ran alongside an earlier
 * sibling counted once. Meant for sequential loads (one connection): the handler windows do
 * not overlap, so every operation belongs to one request. workerd's clock has 1 ms steps.
 */

export interface TraceEvent {
  op: string;
  /** `edge` or the class of the object that issued it */
  by: string;
  /** a window's own id (a handler, or a call an object ran) */
  id?: number;
  /** an operation's: the window it was issued from */
  in?: number;
  t0: number;
  t1?: number;
}

export interface TraceStep {
  /** caller steps and this one, e.g. `do request COORDINATOR.fill › do request GUARD.acquire` */
  path: string;
  /** how many per request (every request, on the path or not) */
  perRequest: number;
  /** how many per request the answer waited for */
  onPathPerRequest: number;
  /** ms from the handler's start to the step's start, median over the steps on the path */
  startMs: number;
  /** median and mean duration of the steps on the path */
  ms: number;
  meanMs: number;
  /** object calls: median ms until the object's method ran, and from its end until the caller had the result */
  inMs?: number;
  outMs?: number;
  /** median ms the object's own call spent outside the steps it waited for (its own work and waits) */
  ownMs?: number;
}

export interface MissTrace {
  requests: number;
  /** median and mean of the sequential hops per request */
  hops: { median: number; mean: number };
  /** median handler ms, and the handler's own time outside the steps it waited for */
  handlerMs: number;
  handlerOwnMs: number;
  steps: TraceStep[];
}

const BINDING_CLASS: Record<string, string> = {
  COORDINATOR: "KeyCoordinatorObject",
  GUARD: "OriginGuardObject",
  PURGES: "PurgeRegistryObject",
  STATS: "StatsObject",
};

const isOperation = (op: string): boolean =>
  op.startsWith("do request ") ||
  op.startsWith("cache api ") ||
  op === "fetch (origin)" ||
  op.startsWith("storage alarm");

interface Node {
  path: string;
  t0: number;
  t1: number;
  onPath: boolean;
  children: Node[];
  inMs?: number;
  outMs?: number;
  ownMs?: number;
}

/** The middle value (the mean of the middle two for an even count); NaN for none. */
export const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};
const mean = (xs: number[]): number => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);

/** Time in [t0, t1] covered by none of `spans`. */
function uncovered(t0: number, t1: number, spans: Array<[number, number]>): number {
  let covered = 0;
  let until = t0;
  for (const [a, b] of [...spans].sort((x, y) => x[0] - y[0])) {
    const from = Math.max(a, until);
    const to = Math.min(b, t1);
    if (to > from) covered += to - from;
    until = Math.max(until, Math.min(b, t1));
  }
  return Math.max(0, t1 - t0 - covered);
}

/** Steps on the path below `nodes`, counting siblings that overlapped an earlier one once. */
function sequentialHops(nodes: Node[]): number {
  let hops = 0;
  let busyUntil = -Infinity;
  for (const node of [...nodes].filter((n) => n.onPath).sort((a, b) => a.t0 - b.t0)) {
    if (node.t0 >= busyUntil) hops++;
    busyUntil = Math.max(busyUntil, node.t1);
    hops += sequentialHops(node.children);
  }
  return hops;
}

interface Timeline {
  /** operations by the window they were issued from */
  issued: Map<number, TraceEvent[]>;
  /** object calls (windows) by `Class.method`, sorted by start */
  calls: Map<string, TraceEvent[]>;
  claimed: Set<TraceEvent>;
}

/** The steps issued from `window`, each object call with the steps it issued, recursively. */
function walk(timeline: Timeline, window: TraceEvent, parentPath: string, onPath: boolean, out: Node[]): number {
  const spans: Array<[number, number]> = [];
  const end = window.t1 as number;
  for (const e of timeline.issued.get(window.id as number) ?? []) {
    if (!isOperation(e.op) || e.t1 === undefined) continue;
    const path = parentPath === "" ? e.op : `${parentPath} › ${e.op}`;
    const node: Node = { path, t0: e.t0, t1: e.t1, onPath: onPath && e.t1 <= end, children: [] };
    if (node.onPath) spans.push([e.t0, e.t1]);
    const [binding, method] = e.op.startsWith("do request ") ? e.op.slice("do request ".length).split(".") : [];
    const cls = binding === undefined ? undefined : BINDING_CLASS[binding];
    // The object's call this RPC became: the first unclaimed one of that method within it.
    const callee =
      cls === undefined
        ? undefined
        : timeline.calls
            .get(`${cls}.${method}`)
            ?.find((w) => !timeline.claimed.has(w) && w.t0 >= e.t0 && w.t1 !== undefined && w.t1 <= (e.t1 as number));
    if (callee?.t1 !== undefined) {
      timeline.claimed.add(callee);
      node.inMs = callee.t0 - e.t0;
      node.outMs = e.t1 - callee.t1;
      node.ownMs = walk(timeline, callee, path, node.onPath, node.children);
    }
    out.push(node);
  }
  return uncovered(window.t0, end, spans);
}

/** Every node of a request's tree, depth first. */
function flatten(nodes: Node[]): Node[] {
  return nodes.flatMap((n) => [n, ...flatten(n.children)]);
}

/** The trace of every isolate, merged: each client request's steps, aggregated by step. */
export function missTrace(events: TraceEvent[]): MissTrace | undefined {
  const sorted = [...events].sort((a, b) => a.t0 - b.t0);
  const timeline: Timeline = { issued: new Map(), calls: new Map(), claimed: new Set() };
  for (const e of sorted) {
    if (e.in !== undefined) timeline.issued.set(e.in, [...(timeline.issued.get(e.in) ?? []), e]);
    else if (e.id !== undefined && e.op !== "handler")
      timeline.calls.set(e.op, [...(timeline.calls.get(e.op) ?? []), e]);
  }
  const handlers = sorted.filter((e) => e.op === "handler" && e.id !== undefined && e.t1 !== undefined);
  if (handlers.length === 0) return undefined;
  const byPath = new Map<string, Node[]>();
  const hops: number[] = [];
  const handlerMs: number[] = [];
  const handlerOwnMs: number[] = [];
  for (const handler of handlers) {
    const nodes: Node[] = [];
    handlerOwnMs.push(walk(timeline, handler, "", true, nodes));
    handlerMs.push((handler.t1 as number) - handler.t0);
    hops.push(sequentialHops(nodes));
    for (const node of flatten(nodes)) {
      const list = byPath.get(node.path) ?? [];
      list.push({ ...node, t0: node.t0 - handler.t0, t1: node.t1 - handler.t0 });
      byPath.set(node.path, list);
    }
  }
  const n = handlers.length;
  const steps: TraceStep[] = [...byPath].map(([path, list]) => {
    const onPath = list.filter((x) => x.onPath);
    const durations = onPath.map((x) => x.t1 - x.t0);
    const step: TraceStep = {
      path,
      perRequest: list.length / n,
      onPathPerRequest: onPath.length / n,
      startMs: median(onPath.map((x) => x.t0)),
      ms: median(durations),
      meanMs: mean(durations),
    };
    const calls = onPath.filter((x) => x.inMs !== undefined);
    if (calls.length > 0) {
      step.inMs = median(calls.map((x) => x.inMs as number));
      step.outMs = median(calls.map((x) => x.outMs as number));
      step.ownMs = median(calls.map((x) => x.ownMs as number));
    }
    return step;
  });
  // Steps on the path first, in the order a request meets them.
  steps.sort((a, b) => (Number.isNaN(a.startMs) ? 1 : 0) - (Number.isNaN(b.startMs) ? 1 : 0) || a.startMs - b.startMs);
  return {
    requests: n,
    hops: { median: median(hops), mean: mean(hops) },
    handlerMs: median(handlerMs),
    handlerOwnMs: median(handlerOwnMs),
    steps,
  };
}
