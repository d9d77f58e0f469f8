import type { FillResult, PassResponse } from "../core/fill/coordinator.ts";
import { HerdlessError } from "../core/errors.ts";
import type { Entry } from "../core/http/entry.ts";

/**
 * Bodies above this cross RPC as a stream. workerd refuses an RPC value above 32 MiB
 * ("Serialized RPC arguments or return values are limited to 32MiB"), and a stored body may
 * be up to 128 MiB (`cache.maxEntryBytes`); below a MiB one message costs less than a stream.
 */
const INLINE_BODY_BYTES = 1024 * 1024;

/** A stored body as it crosses RPC: inline, or streamed with the length it must have. */
type WireBody = Uint8Array | { stream: ReadableStream<Uint8Array>; bytes: number };
type WireEntry = Omit<Entry, "body"> & { body: WireBody };
type EntryResult = Extract<FillResult, { kind: "entry" }>;
type FailedResult = Extract<FillResult, { kind: "failed" }>;

/**
 * A {@link FillResult} as the key's object sends it over RPC: what the edge turns back into
 * the result with {@link fromWire}. Only bodies held as bytes change: an entry's (or a stale
 * copy's) body above {@link INLINE_BODY_BYTES} becomes a stream, as does a relayed answer's.
 */
export type WireFillResult =
  | (Omit<EntryResult, "entry"> & { entry: WireEntry })
  | (Omit<FailedResult, "stale"> & { stale?: WireEntry })
  | Exclude<FillResult, { kind: "entry" | "failed" }>;

/** The object's side: large bodies out of the RPC value, into streams beside it. */
export function toWire(result: FillResult): WireFillResult {
  switch (result.kind) {
    case "entry":
      return { ...result, entry: wireEntry(result.entry) };
    case "failed": {
      const { stale, response, ...rest } = result;
      return {
        ...rest,
        ...(stale ? { stale: wireEntry(stale) } : {}),
        ...(response ? { response: wirePass(response) } : {}),
      };
    }
    case "pass":
      return { ...result, response: wirePass(result.response) };
    default:
      return result;
  }
}

/**
 * The edge's side: the result as the engine takes it. A streamed entry body is read whole
 * (the engine serves ranges and validators from the bytes, and keeps them in the near tier);
 * one cut short throws, as an unreachable coordinator does. A relayed answer stays a stream.
 */
export async function fromWire(wire: WireFillResult): Promise<FillResult> {
  switch (wire.kind) {
    case "entry":
      return { ...wire, entry: await entryOf(wire.entry) };
    case "failed": {
      const { stale, ...rest } = wire;
      return stale ? { ...rest, stale: await entryOf(stale) } : rest;
    }
    default:
      return wire;
  }
}

function wireEntry(entry: Entry): WireEntry {
  if (entry.body.byteLength <= INLINE_BODY_BYTES) return entry;
  return { ...entry, body: { stream: streamOf(entry.body), bytes: entry.body.byteLength } };
}

function wirePass(response: PassResponse): PassResponse {
  const { body } = response;
  // Streamed across, the bytes keep their length for the client's Content-Length.
  return body instanceof Uint8Array && body.byteLength > INLINE_BODY_BYTES
    ? { ...response, body: streamOf(body), contentLength: body.byteLength }
    : response;
}

/** A native stream of bytes already in memory: the runtime sends it without running the object's JavaScript. */
function streamOf(body: Uint8Array): ReadableStream<Uint8Array> {
  return new Response(body).body!;
}

async function entryOf(wire: WireEntry): Promise<Entry> {
  const { body } = wire;
  if (body instanceof Uint8Array) return { ...wire, body };
  const bytes = new Uint8Array(await new Response(body.stream).arrayBuffer());
  if (bytes.byteLength !== body.bytes) {
    throw new HerdlessError(
      "COORDINATOR_UNAVAILABLE",
      `stored body of ${wire.key} came ${bytes.byteLength} of ${body.bytes} bytes from its coordinator`,
    );
  }
  return { ...wire, body: bytes };
}
