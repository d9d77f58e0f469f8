import { isOriginCallError, metricOfStatus } from "../core/origin/guarded-call.ts";
import type { Config } from "../core/config.ts";
import type { Coordinator, FillResult } from "../core/fill/coordinator.ts";
import { HerdlessError } from "../core/errors.ts";
import type { Metrics, OriginOutcomeKind } from "../core/admin/metrics.ts";
import type { KeyCoordinatorObject } from "./key-coordinator-object.ts";
import { fromWire, type WireFillResult } from "./fill-wire.ts";

/**
 * The coordinator as the engine sees it: the key's Durable Object over typed RPC.
 *
 * The edge stops waiting after `coordinator.waitTimeoutMs` and falls back. The object's
 * own call is not cancelled: it is the key's shared flight, bounded inside the object by
 * the lease and the origin timeout, and finishing it stores the entry for every caller.
 */
export function coordinatorClient(
  namespace: DurableObjectNamespace<KeyCoordinatorObject>,
  config: Config,
): Coordinator {
  const waitMs = config.coordinator.waitTimeoutMs;
  const { locationHint } = config.coordinator;
  // A hint only matters when an object is first created: then it is placed near the origin.
  const objectOf = (primary: string) =>
    namespace.get(namespace.idFromName(primary), locationHint ? { locationHint } : undefined);
  return {
    async fill(request) {
      // RPC typing widens tuples ([string, string]) to arrays; the cloned values are the same.
      const call = objectOf(request.primary).fill(request) as Promise<unknown> as Promise<WireFillResult>;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new HerdlessError(
                "COORDINATOR_UNAVAILABLE",
                `coordinator of ${request.primary} did not answer within ${waitMs} ms`,
              ),
            ),
          waitMs,
        );
      });
      let wire: WireFillResult;
      try {
        wire = await Promise.race([call, deadline]);
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
      // The object answered: a large stored body still streams in, bounded by the object's liveness, not the wait.
      return fromWire(wire);
    },
    async invalidate(primary, headers) {
      await objectOf(primary).invalidate(primary, headers);
    },
  };
}

/**
 * Counts the origin calls a coordinator reports to this edge: the flight it led
 * (`fwdStatus` set, not collapsed) or an origin failure. A refresh a coordinator starts on
 * its own (behind a stale answer to an edge without a copy) is not seen here.
 */
export function countingOriginCalls(inner: Coordinator, metrics: Metrics): Coordinator {
  return {
    async fill(request) {
      const result = await inner.fill(request);
      const outcome = originOutcome(result);
      if (outcome) metrics.originCall(outcome);
      return result;
    },
    ...(inner.invalidate ? { invalidate: inner.invalidate.bind(inner) } : {}),
  };
}

function originOutcome(result: FillResult): OriginOutcomeKind | undefined {
  if (result.kind === "alone") return undefined;
  if (result.kind !== "pass" && result.collapsed) return undefined;
  const status = result.fwdStatus;
  if (status === undefined) return result.kind === "failed" && isOriginCallError(result.code) ? "error" : undefined;
  return metricOfStatus(status);
}
