import { inject } from "vitest";
import type { OriginBehaviourPatch, OriginStats, OriginWaitCondition } from "./origin-protocol.ts";

/**
 * A namespace of the counting origin that vitest.workers.setup.ts runs in Node on
 * 127.0.0.1. Counts are exact: they are what reached the origin's socket.
 */
export interface TestOrigin {
  /** Use as ORIGIN_URL: `${url}/page` is served by this namespace. */
  readonly url: string;
  /** Changes how the origin answers from the next request on (see OriginBehaviour). */
  set(patch: OriginBehaviourPatch): Promise<void>;
  stats(): Promise<OriginStats>;
  /** Requests that reached the origin, optionally only those for `path` (query included). */
  count(path?: string): Promise<number>;
  /** Resolves once every given field is reached; fails after `timeoutMs` (real time). */
  waitFor(condition: OriginWaitCondition, timeoutMs?: number): Promise<OriginStats>;
  /** Lets `n` (default all) requests parked by `mode: "hold"` go; returns how many went. */
  release(n?: number): Promise<number>;
  /** Back to the default behaviour with zeroed counters. */
  reset(): Promise<void>;
}

/**
 * A fresh origin namespace, so parallel test files never see each other's requests.
 *
 * @example
 * const origin = await testOrigin({ headers: { "cache-control": "max-age=5" } });
 * const res = await worker.fetch(new Request("https://edge.test/a"), { ...env, ORIGIN_URL: origin.url }, ctx);
 * expect(await origin.count()).toBe(1);
 * await origin.set({ mode: "hold" }); // park requests; assert in-flight; then origin.release()
 */
export async function testOrigin(
  patch?: OriginBehaviourPatch,
  name: string = crypto.randomUUID(),
): Promise<TestOrigin> {
  const base = inject("herdlessTestOrigin");
  const control = `${base}/__origin/${encodeURIComponent(name)}`;
  const call = async <T>(verb: string, body?: unknown, query = "", okStatuses = [200]): Promise<T> => {
    const res = await fetch(`${control}/${verb}${query}`, {
      method: body === undefined ? "GET" : "POST",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const value = (await res.json()) as T;
    if (!okStatuses.includes(res.status))
      throw new Error(`test origin ${verb} answered ${res.status}: ${JSON.stringify(value)}`);
    return value;
  };
  const origin: TestOrigin = {
    url: `${base}/o/${encodeURIComponent(name)}`,
    async set(p) {
      await call("set", p);
    },
    stats: () => call<OriginStats>("stats"),
    async count(path) {
      const stats = await call<OriginStats>("stats");
      return path === undefined ? stats.count : stats.requests.filter((r) => r.path === path).length;
    },
    async waitFor(condition, timeoutMs = 5_000) {
      const res = await fetch(`${control}/wait?timeoutMs=${timeoutMs}`, {
        method: "POST",
        body: JSON.stringify(condition),
      });
      const stats = (await res.json()) as OriginStats;
      if (res.status !== 200) {
        throw new Error(
          `test origin: ${JSON.stringify(condition)} not reached within ${timeoutMs} ms (count ${stats.count}, inFlight ${stats.inFlight}, held ${stats.held})`,
        );
      }
      return stats;
    },
    async release(n) {
      const { released } = await call<{ released: number }>("release", {}, n === undefined ? "" : `?n=${n}`);
      return released;
    },
    async reset() {
      await call("reset", {});
    },
  };
  // A reused name (e.g. "shared") starts clean too.
  await origin.reset();
  if (patch) await origin.set(patch);
  return origin;
}
