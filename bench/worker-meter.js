/* global Response, performance, queueMicrotask */
/**
 * The bench's meter around the herdless Worker bundle (see worker-host.ts): the same
 * Worker and Durable Object classes, with every billable operation counted where it
 * happens, inside workerd, rather than estimated:
 *
 * - Durable Object requests: each call on a stub of COORDINATOR, GUARD, PURGES or STATS (from an
 *   edge or from inside an object), by binding and method;
 * - Durable Object storage: SQL rows read and written (the cursor's own counters), KV
 *   reads and writes, alarm reads and writes;
 * - Durable Object duration: wall time during which an object had a call or alarm running;
 * - Cache API operations (match, put, delete) and outbound fetches (the origin).
 *
 * Each operation that returns a promise also adds its wall time until it settled (`ms`), and
 * the handler's own time per request is summed (`handlerMs`): where a request's time goes.
 * Each operation is counted as `fg` when a client request was in progress in this isolate
 * when it started (on the request's path, for sequential loads), `bg` otherwise.
 * `GET /__bench/meter` answers this isolate's counters; `POST /__bench/meter` resets them.
 *
 * With `?trace=1` on the POST, the isolate also records a timeline until the next reset (at
 * most TRACE_LIMIT events; `GET /__bench/meter?trace=1` returns it): each client request's
 * handler and each call an object ran, and each operation above with the one it was issued
 * from, and when each started and settled. bench/miss-trace.ts turns it into the hops of each
 * request and how long each took. Times are workerd's clock: epoch ms in 1 ms steps, the same
 * for every isolate of the process. Needs the `nodejs_als` compatibility flag (worker-host.ts).
 * Plain JavaScript: workerd loads it next to the bundle, untranspiled.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { DurableObject } from "cloudflare:workers";
import worker, * as herdless from "./worker.js";

let clientRequests = 0;
/** wall ms from the handler's start until it returned its Response, summed */
let handlerMs = 0;
let inProgress = 0;
/** @type {Record<string, { fg: number, bg: number }>} */
let counts = {};
/** @type {Record<string, number>} */
let activeMs = {};
/** SQL statements (their first 72 characters): calls, rows read, rows written. @type {Record<string, { calls: number, read: number, written: number }>} */
let rowsBySql = {};

const TRACE_LIMIT = 50_000;
/**
 * The timeline: windows (a client request's handler, `handler`; a call an object ran,
 * `Class.method`) with their own `id`, and operations with the id of the window they were
 * issued from (`in`). The window is found through the async context (AsyncLocalStorage), so
 * work a request left behind it (ctx.waitUntil) is still its own.
 * @type {Array<{ op: string, by: string, id?: number, in?: number, t0: number, t1?: number }> | undefined}
 */
let trace;
let nextWindow = 0;
/** @type {AsyncLocalStorage<{ id: number, by: string }>} */
const windows = new AsyncLocalStorage();

/** Starts a trace event; returns the function that ends it (a no-op while not tracing). */
function traced(event) {
  if (trace === undefined || trace.length >= TRACE_LIMIT) return () => undefined;
  const recorded = { ...event, t0: performance.now() };
  trace.push(recorded);
  return () => {
    recorded.t1 = performance.now();
  };
}

/** Runs `fn` as a new window named `op` of `by` (the edge or an object's class). */
function inWindow(op, by, fn) {
  // Not tracing: no async context to enter (it costs every request, hits included, and the
  // bare Worker the hit path is compared with pays nothing like it).
  if (trace === undefined) return { end: () => undefined, result: fn() };
  const id = ++nextWindow;
  const end = traced({ op, by, id });
  return { end, result: windows.run({ id, by }, fn) };
}

function count(name, n = 1) {
  if (n === 0) return;
  const slot = (counts[name] ??= { fg: 0, bg: 0, ms: 0 });
  if (inProgress > 0) slot.fg += n;
  else slot.bg += n;
}

/** Counts one operation (issued by `by`) and adds the wall time until `result` settles to its `ms`. */
function timed(name, result, by) {
  count(name);
  // RPC calls answer with a thenable of their own, not a Promise.
  if (typeof result?.then !== "function") return result;
  const started = performance.now();
  const window = windows.getStore();
  const end = traced({ op: name, by: window?.by ?? by ?? "edge", ...(window ? { in: window.id } : {}) });
  const add = () => {
    counts[name].ms += performance.now() - started;
    end();
  };
  Promise.resolve(result).then(add, add);
  return result;
}

/** Calls a method of `target` with `this` kept (workerd's native objects insist on it). */
function passThrough(target, prop) {
  const value = Reflect.get(target, prop);
  return typeof value === "function" ? value.bind(target) : value;
}

function meteredStub(stub, binding, by) {
  return new Proxy(stub, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      // A stub answers any name with an RPC method: `then` must stay what it is, or an
      // awaited stub would look thenable.
      if (typeof prop !== "string" || prop === "then" || typeof value !== "function") return value;
      return (...args) => {
        // Reflect.apply: `value.apply` would be an RPC call of a remote method named "apply".
        return timed(`do request ${binding}.${prop}`, Reflect.apply(value, target, args), by);
      };
    },
  });
}

function meteredNamespace(namespace, binding, by) {
  return new Proxy(namespace, {
    get(target, prop) {
      if (prop === "get" || prop === "getByName")
        return (...args) => meteredStub(Reflect.apply(Reflect.get(target, prop), target, args), binding, by);
      return passThrough(target, prop);
    },
  });
}

/**
 * One metered env per env object workerd hands over (it is the same object for every request)
 * and per issuer (`edge`, or the class of the object that uses it).
 */
const meteredEnvs = new WeakMap();
function meteredEnv(env, by = "edge") {
  let byIssuer = meteredEnvs.get(env);
  if (byIssuer === undefined) meteredEnvs.set(env, (byIssuer = new Map()));
  const known = byIssuer.get(by);
  if (known !== undefined) return known;
  const out = { ...env };
  byIssuer.set(by, out);
  for (const binding of ["COORDINATOR", "GUARD", "PURGES", "STATS"])
    if (env[binding] !== undefined) out[binding] = meteredNamespace(env[binding], binding, by);
  return out;
}

function meteredSql(sql) {
  return new Proxy(sql, {
    get(target, prop) {
      if (prop !== "exec") return passThrough(target, prop);
      return (...args) => {
        const cursor = target.exec(...args);
        // herdless reads every cursor in the same synchronous block: the counters are final here.
        queueMicrotask(() => {
          count("storage rows read", cursor.rowsRead);
          count("storage rows written", cursor.rowsWritten);
          const statement = String(args[0]).replace(/\s+/g, " ").slice(0, 72);
          const slot = (rowsBySql[statement] ??= { calls: 0, read: 0, written: 0 });
          slot.calls++;
          slot.read += cursor.rowsRead;
          slot.written += cursor.rowsWritten;
        });
        return cursor;
      };
    },
  });
}

const KV = { get: "storage kv read", put: "storage kv write", delete: "storage kv write", list: "storage kv read" };
const ALARM = { getAlarm: "storage alarm read", setAlarm: "storage alarm write", deleteAlarm: "storage alarm write" };

function meteredStorage(storage) {
  const sql = meteredSql(storage.sql);
  return new Proxy(storage, {
    get(target, prop) {
      if (prop === "sql") return sql;
      const what = KV[prop] ?? ALARM[prop];
      if (what === undefined) return passThrough(target, prop);
      return (...args) => {
        const keys = Array.isArray(args[0]) ? args[0].length : 1;
        if (prop in ALARM) return timed(what, Reflect.apply(Reflect.get(target, prop), target, args));
        count(what, keys);
        return Reflect.apply(Reflect.get(target, prop), target, args);
      };
    },
  });
}

function meteredState(state) {
  const storage = meteredStorage(state.storage);
  return new Proxy(state, { get: (target, prop) => (prop === "storage" ? storage : passThrough(target, prop)) });
}

/** The Durable Object class `Base` with its storage and stubs metered and its busy time measured. */
function metered(Base) {
  const name = Base.name;
  class Metered extends Base {
    constructor(state, env) {
      // workerd's base class takes only the real state: the metered one replaces it afterwards
      // (herdless reads `this.ctx` and `this.env` after construction).
      super(state, env);
      Object.defineProperty(this, "ctx", { value: meteredState(state) });
      Object.defineProperty(this, "env", { value: meteredEnv(env, name) });
      this.__benchActive = 0;
      this.__benchSince = 0;
    }
  }
  Object.defineProperty(Metered, "name", { value: name });
  const seen = new Set(["constructor"]);
  for (let proto = Base.prototype; proto && proto !== DurableObject.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      const method = Object.getOwnPropertyDescriptor(proto, key)?.value;
      if (seen.has(key) || typeof method !== "function") continue;
      seen.add(key);
      Object.defineProperty(Metered.prototype, key, {
        configurable: true,
        writable: true,
        // Sync stays sync (herdless's private helpers are methods too); a promise counts until it settles.
        value: function (...args) {
          // An alarm invocation is billed as a request, like an RPC call.
          if (key === "alarm") count(`do request ${name}.alarm`);
          if (this.__benchActive++ === 0) this.__benchSince = performance.now();
          // A call from outside (RPC, the alarm) is a window of the timeline; the object's own
          // helper methods run in the window of the call that used them.
          const outside = windows.getStore()?.by !== name;
          let untrace = () => undefined;
          const end = () => {
            untrace();
            if (--this.__benchActive === 0)
              activeMs[name] = (activeMs[name] ?? 0) + (performance.now() - this.__benchSince);
          };
          let out;
          try {
            if (outside) {
              const run = inWindow(`${name}.${key}`, name, () => method.apply(this, args));
              untrace = run.end;
              out = run.result;
            } else out = method.apply(this, args);
          } catch (error) {
            end();
            throw error;
          }
          if (out instanceof Promise) return out.finally(end);
          end();
          return out;
        },
      });
    }
  }
  return Metered;
}

export const KeyCoordinatorObject = metered(herdless.KeyCoordinatorObject);
export const OriginGuardObject = metered(herdless.OriginGuardObject);
export const PurgeRegistryObject = metered(herdless.PurgeRegistryObject);
export const StatsObject = metered(herdless.StatsObject);

const realFetch = globalThis.fetch;
globalThis.fetch = (...args) => timed("fetch (origin)", realFetch(...args));

const CACHE_OPS = { match: "cache api match", put: "cache api put", delete: "cache api delete" };
function meteredCache(cache) {
  return new Proxy(cache, {
    get(target, prop) {
      const what = CACHE_OPS[prop];
      if (what === undefined) return passThrough(target, prop);
      return (...args) => timed(what, Reflect.apply(Reflect.get(target, prop), target, args));
    },
  });
}
const realCaches = globalThis.caches;
const cacheStorage = new Proxy(realCaches, {
  get(target, prop) {
    // Opening is no billed operation, but it is awaited: timed (and traced) as `caches.open`.
    if (prop === "open") return async (name) => meteredCache(await timed("caches.open", target.open(name)));
    if (prop === "default") return meteredCache(target.default);
    return passThrough(target, prop);
  },
});
Object.defineProperty(globalThis, "caches", { value: cacheStorage, configurable: true, writable: true });

function snapshot(withTrace) {
  return { clientRequests, handlerMs, counts, activeMs, rowsBySql, ...(withTrace ? { trace: trace ?? [] } : {}) };
}

export default {
  async fetch(request, env, ctx) {
    // Parsed only for the meter's own path: a URL per request would be charged to herdless's hits.
    const url = request.url.includes("/__bench/meter") ? new URL(request.url) : undefined;
    if (url?.pathname === "/__bench/meter") {
      const tracing = url.searchParams.get("trace") === "1";
      const body = JSON.stringify(snapshot(tracing && request.method === "GET"));
      if (request.method === "POST") {
        clientRequests = 0;
        handlerMs = 0;
        counts = {};
        activeMs = {};
        rowsBySql = {};
        trace = tracing ? [] : undefined;
      }
      return new Response(body, { headers: { "content-type": "application/json" } });
    }
    clientRequests++;
    inProgress++;
    const started = performance.now();
    const t0 = Date.now();
    const run = inWindow("handler", "edge", () => worker.fetch(request, meteredEnv(env), ctx));
    try {
      const response = await run.result;
      if (env.BENCH_TRACE === undefined) return response;
      // BENCH_REQUEST_LOG: when the handler ran (workerd's clock), for the load generator's log.
      // Stamped on herdless's own answer where its headers are mutable: a copy made with
      // `new Response(response.body, response)` turns a byte body into a stream that workerd
      // pumps over later turns, which the bare Workers (stamped in their script) never pay.
      const stamp = `dc=${env.BENCH_TRACE};t0=${t0};t1=${Date.now()}`;
      try {
        response.headers.set("x-bench-trace", stamp);
        return response;
      } catch {
        // Immutable headers (a fetched response relayed as it came): the copy it has to be.
        const traced = new Response(response.body, response);
        traced.headers.set("x-bench-trace", stamp);
        return traced;
      }
    } finally {
      run.end();
      inProgress--;
      handlerMs += performance.now() - started;
    }
  },
};
