import type { FillResult, RequesterFields } from "./coordinator.ts";
import type { Entry } from "../http/entry.ts";
import type { StreamedOriginResponse } from "../origin/origin-client.ts";
import { SharedBody } from "./shared-body.ts";
import type { SharedBodyLimits } from "./laggards.ts";

/**
 * A flight whose body is still arriving: every caller reads its own stream of `shared`.
 * The lease stays held until the body ended and was stored (`done`).
 */
export interface SharedFlight {
  kind: "shared";
  head: Omit<Entry, "body">;
  shared: SharedBody;
  /** The leader's stream, taken before the body could pass `keepBytes` without a reader. */
  first: ReadableStream<Uint8Array> | undefined;
  bytes: number | undefined;
  size: Extract<FillResult, { kind: "stream" }>["size"];
  fwdStatus: number;
  /** Settles once the body ended, the entry was stored (if it could be) and the lease released. */
  done: Promise<void>;
  /** Relayed from another process's flight: every caller here joined it (collapsed), none leads it. */
  relayed?: true;
  /** The leader's own fields (coordinator.ts RequesterFields): in its stream's answer only, never relayed. */
  requesterFields?: RequesterFields;
}

/**
 * Result of the one flight per key; each caller's stream is decided per caller afterwards.
 * `alone`: another process's flight got an answer meant for one client; each caller asks on its own.
 */
export type FlightResult = Exclude<FillResult, { kind: "stream" }> | SharedFlight;

/**
 * A storable answer whose body is still arriving: one read of it, for every caller; up to
 * `limits.keepBytes` of it is kept so a caller that joins late still gets the whole body.
 */
export function shareBody(entry: Entry, res: StreamedOriginResponse, limits: SharedBodyLimits): SharedFlight {
  const declared = res.declaredBytes;
  const maxEntryBytes = limits.keepBytes;
  const shared = new SharedBody(res.body, {
    ...limits,
    ...(declared !== undefined ? { declaredBytes: declared } : {}),
  });
  const { body: _empty, ...head } = entry;
  return {
    kind: "shared",
    head,
    shared,
    first: shared.reader(),
    bytes: declared,
    size: declared === undefined ? "unknown" : declared <= maxEntryBytes ? "fits" : "too-large",
    fwdStatus: res.status,
    done: Promise.resolve(),
  };
}

/**
 * This caller's stream of a shared flight, or undefined when the start of the body is gone.
 * The leader (not `collapsed`) takes the stream opened before the body could run ahead.
 */
export function streamOf(flight: SharedFlight, collapsed: boolean): FillResult | undefined {
  let body = collapsed ? undefined : flight.first;
  if (body) flight.first = undefined;
  else body = flight.shared.reader();
  if (!body) return undefined;
  const own = collapsed ? undefined : flight.requesterFields;
  return { ...streamAnswer(flight, body), collapsed, ...(own?.length ? { requesterFields: own } : {}) };
}

/** The flight's head and sizes around one reader's `body`: a caller's stream, here or in another process. */
export function streamAnswer(flight: SharedFlight, body: ReadableStream<Uint8Array>) {
  return {
    kind: "stream" as const,
    head: flight.head,
    body,
    ...(flight.bytes !== undefined ? { bytes: flight.bytes } : {}),
    size: flight.size,
    fwdStatus: flight.fwdStatus,
  };
}

/**
 * An entry or stream result as a caller that joined someone else's flight gets it: collapsed,
 * and without the fields that were the leader's alone ({@link RequesterFields}).
 *
 * @example
 * if (joined && value.kind === "entry") return asJoined(value);
 */
export function asJoined<R extends Extract<FillResult, { kind: "entry" | "stream" }>>(result: R): R {
  const { requesterFields: _leaders, ...rest } = result;
  return { ...rest, collapsed: true } as R;
}
