import { configureForTest, inObject } from "./in-object.ts";
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { Clock } from "../../src/core/clock.ts";
import { routeFor, type ConfigInput } from "../../src/core/config.ts";
import { canonicalUrl } from "../../src/core/http/canonical-url.ts";
import { primaryKey } from "../../src/core/http/key.ts";
import { handle } from "../../src/cloudflare/edge.ts";
import { configFromEnv } from "../../src/cloudflare/config-env.ts";
import type { Env } from "../../src/cloudflare/env.ts";
import { coordinatorTestHooks } from "../../src/cloudflare/key-coordinator-object.ts";
import { guardTestHooks, type OriginGuardObject } from "../../src/cloudflare/origin-guard-object.ts";
import type { GuardSnapshot } from "../../src/core/guard/origin-guard.ts";

/** The edge's hostname in tests; keys are `GET https://edge.test/<path>`. */
export const EDGE = "https://edge.test";

/** The Worker's env for a test: its own origin namespace and herdless config. */
export function edgeEnv(
  originUrl: string,
  config: Omit<ConfigInput, "origin"> & { origin?: Partial<ConfigInput["origin"]> } = {},
): Env {
  return { ...env, ORIGIN_URL: originUrl, HERDLESS_CONFIG: JSON.stringify(config) };
}

export interface Answer {
  status: number;
  body: string;
  cacheStatus: string;
  headers: Headers;
  /** Resolves once the request's background work (ctx.waitUntil) is done. */
  settled: Promise<void>;
}

/** One simulated data center: its own named Cache API cache, the shared COORDINATOR namespace. */
export interface DataCenter {
  name: string;
  get(path: string, init?: RequestInit): Promise<Answer>;
  /** The edge's response as it is, body unread (for streaming tests). */
  fetch(path: string, init?: RequestInit): Promise<{ response: Response; settled: Promise<void> }>;
}

export interface DataCenterOptions {
  /** Give the data center its own simulated isolate (purge copy, metrics, fallback state). */
  ownIsolate?: boolean;
  /** Name that isolate (default: the data center's name), to simulate several per data center. */
  isolate?: string;
  /** The deployment's stats object the isolate reports to (default "global"); a test's own keeps its counts apart. */
  statsObject?: string;
}

export function dataCenter(name: string, testEnv: Env, clock?: Clock, options: DataCenterOptions = {}): DataCenter {
  const fetch: DataCenter["fetch"] = async (path, init) => {
    const ctx = createExecutionContext();
    const response = await handle(new Request(`${EDGE}${path}`, init), testEnv, ctx, {
      cacheName: name,
      ...(clock ? { clock } : {}),
      ...(options.isolate || options.ownIsolate ? { isolate: options.isolate ?? name } : {}),
      ...(options.statsObject ? { statsObject: options.statsObject } : {}),
    });
    return { response, settled: waitOnExecutionContext(ctx) };
  };
  return {
    name,
    fetch,
    async get(path, init) {
      const { response: res, settled } = await fetch(path, init);
      const body = await res.text();
      return {
        status: res.status,
        body,
        cacheStatus: res.headers.get("cache-status") ?? "",
        headers: res.headers,
        settled,
      };
    },
  };
}

/** `n` data centers with caches no other test uses. */
export function dataCenters(n: number, testEnv: Env, clock?: Clock, options: DataCenterOptions = {}): DataCenter[] {
  const run = crypto.randomUUID().slice(0, 8);
  return Array.from({ length: n }, (_, i) => dataCenter(`dc${i}-${run}`, testEnv, clock, options));
}

/** The coordinator object of the key the edge computes for `path`. */
export function coordinatorOf(testEnv: Env, path: string) {
  const config = configFromEnv(testEnv);
  const url = canonicalUrl(new URL(`${EDGE}${path}`));
  return env.COORDINATOR.get(env.COORDINATOR.idFromName(primaryKey(url, routeFor(config, url.pathname).key)));
}

/**
 * Gives the coordinators of `paths` the test's clock and config (a Clock cannot cross RPC)
 * and, with `guardName`, a guard object of their own, so a breaker one test opens stays
 * in that test.
 */
export async function useInCoordinators(
  testEnv: Env,
  paths: string[],
  clock: Clock,
  guardName?: string,
): Promise<void> {
  const config = configFromEnv(testEnv);
  await Promise.all(
    paths.map((path) =>
      configureForTest(coordinatorOf(testEnv, path), (instance) =>
        instance[coordinatorTestHooks]().use({ clock, config, ...(guardName ? { guardName } : {}) }),
      ),
    ),
  );
}

/** Gives the guard object `guardName` the test's config (cap, queue, breaker); call it before any traffic. */
export async function useGuardConfig(testEnv: Env, guardName: string): Promise<void> {
  const config = configFromEnv(testEnv);
  await configureForTest(env.GUARD.get(env.GUARD.idFromName(guardName)), (instance: OriginGuardObject) =>
    instance[guardTestHooks]({ config }),
  );
}

/** A token for tests of the admin API (at least 16 characters). */
export const ADMIN_TOKEN = "test-admin-token-3f9c2a7e";

/** An admin API call through the edge, as an operator makes it: the bearer token and a JSON body. */
export async function adminCall(
  dc: DataCenter,
  method: "GET" | "POST",
  path: string,
  options: { token?: string | null; body?: unknown } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  const token = options.token === undefined ? ADMIN_TOKEN : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  return dc.get(`/__herdless/${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
}

/** Waits for the background work of every answer and of the coordinators of `paths`. */
export async function settle(answers: Answer[], testEnv: Env, paths: string[]): Promise<void> {
  await Promise.all(answers.map((a) => a.settled));
  await Promise.all(
    paths.map((path) =>
      inObject(coordinatorOf(testEnv, path), (instance) => instance[coordinatorTestHooks]().settled()),
    ),
  );
}

/**
 * Gives the guard object `guardName` the test's config and clock (the breaker's and the
 * permits' time; a Clock cannot cross RPC); call it before any traffic, and again after
 * `abortAllDurableObjects()`.
 */
export async function useGuard(testEnv: Env, guardName: string, clock: Clock): Promise<void> {
  const config = configFromEnv(testEnv);
  await configureForTest(env.GUARD.get(env.GUARD.idFromName(guardName)), (instance: OriginGuardObject) =>
    instance[guardTestHooks]({ config, clock }),
  );
}

/** The deployment-wide view of the guard object `guardName`: breaker state, origin requests in flight, queue. */
export function guardSnapshot(guardName: string): Promise<GuardSnapshot> {
  return env.GUARD.get(env.GUARD.idFromName(guardName)).snapshot();
}

/**
 * A Durable Object namespace whose objects cannot be reached: ids are the real ones, and
 * every method called on a stub rejects, as a call to an object that is down does;
 * `onCall` hears each attempt (the method's name), so a test can tell the path was taken.
 *
 * @example
 * const outage = { ...testEnv, COORDINATOR: unreachableNamespace(testEnv.COORDINATOR) };
 */
export function unreachableNamespace<T extends Rpc.DurableObjectBranded | undefined>(
  real: DurableObjectNamespace<T>,
  options: { what?: string; onCall?: (method: string) => void } = {},
): DurableObjectNamespace<T> {
  const what = options.what ?? "Durable Object";
  const stub = new Proxy(
    {},
    {
      // Not thenable: a stub is never awaited.
      get: (_target, property) =>
        property === "then"
          ? undefined
          : () => {
              options.onCall?.(String(property));
              return Promise.reject(new Error(`${what} unreachable (simulated): Network connection lost.`));
            },
    },
  );
  const namespace = {
    idFromName: (name: string) => real.idFromName(name),
    get: () => stub,
  };
  return namespace as unknown as DurableObjectNamespace<T>;
}

/** The env with its COORDINATOR calls counted: each is a billed Durable Object request. */
export function countingCoordinator(base: Env): { env: Env; fills: () => number } {
  let fills = 0;
  const real = base.COORDINATOR;
  const counted = {
    idFromName: (name: string) => real.idFromName(name),
    get: (id: DurableObjectId, options?: DurableObjectNamespaceGetDurableObjectOptions) => {
      const stub = real.get(id, options);
      return {
        fill: (request: Parameters<typeof stub.fill>[0]) => (fills++, stub.fill(request)),
        invalidate: (...args: Parameters<typeof stub.invalidate>) => stub.invalidate(...args),
      };
    },
  } as unknown as typeof real;
  return { env: { ...base, COORDINATOR: counted }, fills: () => fills };
}
