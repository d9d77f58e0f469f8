import type { Coordinator, FillRequest, FillResult } from "../core/fill/coordinator.ts";
import { applyPurge } from "../core/admin/purge.ts";
import { headerList } from "../core/http/http.ts";
import { variantKey } from "../core/http/key.ts";

/**
 * Coordinator calls of one isolate, collapsed per key: while one request of the isolate
 * waits on the key's {@link KeyCoordinatorObject}, the others that need the same key wait
 * on that call instead of making their own. Under a spike the key's object then sees one
 * call per isolate per key, not one per request; each call is a billed Durable Object
 * request and the object answers its callers one after another.
 *
 * Only plain data is shared: an entry (its body is bytes) or a failure. A streamed body
 * belongs to the request that received it, so a waiter whose leader got a stream makes its
 * own call, and the object hands it its own stream of the same flight. A waiter whose
 * variant (Vary) or purges the shared entry does not answer makes its own call too, and a
 * request that must be validated (`revalidate`) never joins.
 *
 * Promises cross requests here, which the runtime allows while the request that made
 * the promise lives: the leader's call is kept alive with `background` (ctx.waitUntil), and
 * a waiter stops waiting after `joinTimeoutMs` and makes its own call (its own timer also
 * keeps the runtime from taking a waiter for a hung request).
 *
 * @example
 * const flights = new IsolateFlights(config.coordinator.waitTimeoutMs);
 * const coordinator = flights.coordinator(coordinatorClient(env.COORDINATOR, config), (p) => ctx.waitUntil(p));
 */
export class IsolateFlights {
  private readonly running = new Map<string, Promise<FillResult>>();

  constructor(private readonly joinTimeoutMs: number) {}

  /** `inner`, with this isolate's concurrent fills of one key collapsed onto one call. */
  coordinator(inner: Coordinator, background: (work: Promise<unknown>) => void): Coordinator {
    return {
      fill: (request) => this.fill(inner, request, background),
      ...(inner.invalidate ? { invalidate: inner.invalidate.bind(inner) } : {}),
    };
  }

  /** Calls in flight now (for tests and stats). */
  get size(): number {
    return this.running.size;
  }

  private async fill(
    inner: Coordinator,
    request: FillRequest,
    background: (work: Promise<unknown>) => void,
  ): Promise<FillResult> {
    if (request.revalidate) return inner.fill(request);
    const running = this.running.get(request.key);
    if (running) {
      const shared = await this.join(running);
      const mine = shared === undefined ? undefined : forWaiter(shared, request);
      return mine ?? inner.fill(request);
    }
    const call = inner.fill(request);
    this.running.set(request.key, call);
    const settled = call.then(
      () => undefined,
      () => undefined,
    );
    background(
      settled.finally(() => {
        if (this.running.get(request.key) === call) this.running.delete(request.key);
      }),
    );
    return call;
  }

  /** The leader's result, or undefined when it did not come within `joinTimeoutMs`. */
  private async join(running: Promise<FillResult>): Promise<FillResult | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), this.joinTimeoutMs);
    });
    try {
      // A leader whose call failed outright (the object unreachable) fails its waiters the
      // same way: each then falls back as the leader does, without a second wait.
      return await Promise.race([running, timeout]);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }
}

/** What a waiter gets from its leader's result, or undefined when it must make its own call. */
function forWaiter(shared: FillResult, request: FillRequest): FillResult | undefined {
  switch (shared.kind) {
    case "entry": {
      const { entry } = shared;
      // The leader's variant is not necessarily this request's.
      if (entry.vary.length > 0 && variantKey(request.primary, entry.vary, headerList(request.headers)) !== entry.key)
        return undefined;
      // A purge this request knows of and the leader's did not (its copy is newer).
      if (request.purges && applyPurge(entry, request.primary, request.purges) !== entry) return undefined;
      return { ...shared, collapsed: true, stored: false };
    }
    case "failed":
      return { ...shared, collapsed: true };
    case "pass":
    case "alone":
      // The answer was not shareable: this request goes to the origin by itself, as a
      // caller that joined the object's flight would.
      return { kind: "alone" };
    case "stream":
      return undefined;
  }
}
