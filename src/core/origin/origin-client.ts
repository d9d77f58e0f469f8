import type { Clock } from "../clock.ts";
import { HerdlessError } from "../errors.ts";
import { fetchStandardDecoding, responseHeaders, bodyWasDecoded, type ContentDecoding } from "./response-fields.ts";
import { streamsAtOnce } from "./response-fields.ts";
import { prepend, readBody } from "./body-read.ts";
import { asOriginError } from "./origin-error.ts";

/**
 * Hears an interim (1xx) response to the request that caused an origin call, before its
 * final answer: `status` in 102–199, `headers` names lowercased, hop-by-hop ones removed.
 */
export type InterimListener = (status: number, headers: [string, string][]) => void;

/**
 * A `fetch` call's options, plus the interim answers the runtime reads past: a runtime that
 * sees them (Node's `node:http`) reports each one with its fields as received; one that
 * cannot (workerd) ignores `onInterim`. Global `fetch` is a {@link FetchLike} as it is.
 */
export interface OriginFetchInit extends RequestInit {
  onInterim?: (status: number, headers: Headers) => void;
  /** {@link OriginRequest.oneClient}: a runtime that pools connections may send it on one an earlier answer came on. */
  reuseConnection?: boolean;
}

/** The `fetch` a runtime provides; injected so the core stays runtime-free and testable. */
export type FetchLike = (url: string, init: OriginFetchInit) => Promise<Response>;

export interface OriginRequest {
  url: string;
  method: string;
  headers: [string, string][];
  body?: ReadableStream<Uint8Array> | Uint8Array | null;
  /** The client this call is made for hears the origin's interim answers ({@link interimRelay}). */
  onInterim?: InterimListener | undefined;
  /**
   * Asks the origin to switch to this protocol (`Upgrade`, with `Connection: upgrade`): its
   * `101` is then the answer, a {@link SwitchedOriginResponse}. Only a WebSocket tunnel asks.
   */
  upgrade?: "websocket";
  /**
   * Its answer goes to its own client alone and is never stored (a relayed request). A
   * runtime that keeps origin connections alive (Node's) sends only such a request on a
   * connection an earlier answer came on: bytes the origin wrote past that answer's end and
   * that arrive after the request is written are read as its answer, and an answer read so
   * must never be stored for everyone. Any other goes on a connection of its own.
   */
  oneClient?: boolean;
}

interface OriginResponseBase {
  status: number;
  /** Headers with names lowercased; hop-by-hop and malformed fields removed. */
  headers: [string, string][];
  /** Names (lowercased) of fields dropped as malformed ({@link isValidField}); storage consults them. */
  droppedFields: string[];
  requestAt: number;
  responseAt: number;
  /** Content-Length as the origin sent it, unless the body was decoded on the way in (see PassResponse). */
  contentLength?: number;
}

/** A complete body, verified against its declared length: the only kind that may be stored. */
export interface BufferedOriginResponse extends OriginResponseBase {
  kind: "buffered";
  body: Uint8Array;
}

/** A body handed on as it arrives, unchecked: its reader must compare it with `declaredBytes`. */
export interface StreamedOriginResponse extends OriginResponseBase {
  kind: "streamed";
  body: ReadableStream<Uint8Array> | null;
  /** Content-Length as declared (absent when unknown, or when the body was decoded on the way in). */
  declaredBytes?: number;
}

/**
 * The origin's `101 Switching Protocols` to a request that asked for it ({@link OriginRequest.upgrade}):
 * no body, and the connection is no longer HTTP. `connection` is what the runtime's `fetch`
 * returned: workerd's carries the origin's WebSocket (`webSocket`), Node's names its socket
 * (origin-fetch.ts `upgradedSocket`). Its holder must close it.
 */
export interface SwitchedOriginResponse extends OriginResponseBase {
  kind: "switched";
  body: null;
  connection: Response;
}

export type OriginResponse = BufferedOriginResponse | StreamedOriginResponse;

/** What the origin may answer a request `R`: a switch of protocols only when `R` asked for one. */
export type AnswerTo<R extends OriginRequest> = R extends { upgrade: "websocket" }
  ? OriginResponse | SwitchedOriginResponse
  : OriginResponse;

export interface OriginCallOptions {
  timeoutMs: number;
  /** Bodies above this are streamed instead of buffered. */
  maxBodyBytes: number;
  /** A body that stops this long once part of it is in is streamed from there (body-read.ts readBody). */
  pauseMs?: number;
  /** ...and so is one the fill budget (`cache.fillBudgetBytes`, store/fill-budget.ts) has no room for. */
  budgetBytes?: number;
  clock: Clock;
  signal?: AbortSignal;
  /** Which Content-Encodings the runtime's `fetch` decodes; undici's ({@link fetchStandardDecoding}) by default. */
  decodes?: ContentDecoding;
}

/**
 * One origin request with a hard deadline. The deadline covers the response head and,
 * for buffered bodies, the whole body: a timeout aborts the underlying fetch, it does not
 * merely stop waiting. A body that ends early (reset, or fewer bytes than Content-Length)
 * raises ORIGIN_TRUNCATED, so a partial body can never reach a store.
 *
 * @example
 * const res = await fetchOrigin(fetch, { url, method: "GET", headers: [] }, { timeoutMs: 5_000, maxBodyBytes: 1e6, clock: systemClock });
 */
export async function fetchOrigin<R extends OriginRequest>(
  fetchFn: FetchLike,
  request: R,
  options: OriginCallOptions,
): Promise<AnswerTo<R>> {
  const { deadline, release } = deadlineOf(request.url, options);
  const requestAt = options.clock.now();
  const interim = interimRelay(request.onInterim);
  let response: Response;
  try {
    response = await fetchFn(request.url, {
      method: request.method,
      headers: request.upgrade ? [...request.headers, ...upgradeFields(request.upgrade)] : request.headers,
      body: request.body ?? null,
      redirect: "manual",
      signal: deadline.signal,
      ...transportInit(request),
      ...interim.init,
    } as OriginFetchInit);
  } catch (cause) {
    release();
    throw asOriginError(cause, deadline.signal, request.url);
  } finally {
    interim.close();
  }
  const responseAt = options.clock.now();
  if (response.status === 101 && request.upgrade) {
    // The switch asked for: the deadline covered the handshake, the connection is the caller's.
    release();
    const { headers, dropped } = responseHeaders(response.headers, () => false);
    const switched: SwitchedOriginResponse = {
      kind: "switched",
      ...{ status: 101, headers, droppedFields: dropped, requestAt, responseAt },
      body: null,
      connection: response,
    };
    return switched as AnswerTo<R>;
  }
  if (response.status < 200 || response.status > 599) {
    // Interim (1xx) answers are the runtime's to consume; one that arrives as the final answer
    // (a 101 to a request that asked for no upgrade), or a status past 599, is no HTTP answer a
    // client can be given: a clean 502, never an exception in a Response constructor.
    release();
    await response.body?.cancel().catch(() => undefined);
    throw new HerdlessError("ORIGIN_STATUS", `origin answered ${request.url} with status ${response.status}`);
  }
  const decodes = options.decodes ?? fetchStandardDecoding;
  const { headers, dropped } = withArrivalDate(responseHeaders(response.headers, decodes), responseAt);
  const contentLength = declaredLength(response.headers, decodes, response.status);
  const base = { status: response.status, headers, droppedFields: dropped, requestAt, responseAt, contentLength };

  const declared = hasNoBody(request.method, response.status) ? 0 : contentLength;
  const streamed = {
    kind: "streamed" as const,
    ...base,
    ...(declared !== undefined ? { declaredBytes: declared } : {}),
  };
  if (streamsAtOnce(response.headers, declared, options.maxBodyBytes)) {
    release();
    return { ...streamed, body: response.body } as AnswerTo<R>;
  }
  try {
    const read = await readBody(response, options.maxBodyBytes, options.pauseMs, options.budgetBytes);
    if (read.kind === "overflow") {
      release();
      return { ...streamed, body: prepend(read.chunks, read.rest, read.pending) } as AnswerTo<R>;
    }
    if (declared !== undefined && read.body.byteLength !== declared) {
      throw new HerdlessError(
        "ORIGIN_TRUNCATED",
        `origin sent ${read.body.byteLength} of ${declared} bytes for ${request.url}`,
      );
    }
    release();
    return { kind: "buffered", ...base, body: read.body } as AnswerTo<R>;
  } catch (cause) {
    release();
    throw asOriginError(cause, deadline.signal, request.url, response.status);
  }
}

/**
 * RFC 9110 §7.8: the fields that ask the next hop to switch protocols. `Upgrade` is hop-by-hop,
 * so a client's is never forwarded (forward.ts): this is the only place that writes one.
 */
function upgradeFields(protocol: "websocket"): [string, string][] {
  return [
    ["connection", "upgrade"],
    ["upgrade", protocol],
  ];
}

/** The call's deadline (`timeoutMs`, or the caller's own abort), and `release` once it no longer applies. */
function deadlineOf(url: string, options: OriginCallOptions): { deadline: AbortController; release: () => void } {
  const deadline = new AbortController();
  const timer = setTimeout(
    () =>
      deadline.abort(
        new HerdlessError("ORIGIN_TIMEOUT", `origin did not answer ${url} within ${options.timeoutMs} ms`),
      ),
    options.timeoutMs,
  );
  const onOuterAbort = () => deadline.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onOuterAbort, { once: true });
  if (options.signal?.aborted) onOuterAbort();
  const release = () => {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onOuterAbort);
  };
  return { deadline, release };
}

/**
 * RFC 9110 §15.2: a proxy MUST forward the 1xx answers it did not ask for itself. Not `100`
 * (herdless never sends Expect on, and answers a client's Expect itself) nor `101` (no
 * upgrades are relayed). Their fields lose what is hop-by-hop, as a final answer's do
 * ({@link responseHeaders}; a 1xx has no body, so its Content-Length goes too, and no coding
 * was decoded). RFC 9111: nothing of them is stored, nor heard by anyone but this call's
 * client, and only before its final answer: `close()` once fetch has settled.
 */
function interimRelay(listener: InterimListener | undefined): {
  init: Pick<OriginFetchInit, "onInterim">;
  close: () => void;
} {
  if (!listener) return { init: {}, close: () => undefined };
  let open = true;
  const onInterim = (status: number, fields: Headers) => {
    if (!open || status <= 101 || status > 199) return;
    try {
      listener(status, responseHeaders(fields, () => false).headers);
    } catch {
      // A client that cannot take it changes nothing for the fetch.
    }
  };
  return { init: { onInterim }, close: () => void (open = false) };
}

/**
 * RFC 9110 §6.6.1: a recipient with a clock MUST add a Date to a response that has none
 * before caching or forwarding it: the time it arrived. Added once, here, so a stored copy
 * says when the origin answered, not when each copy was served (Node's server would stamp
 * every answer with its own time, workerd none at all).
 */
function withArrivalDate<T extends { headers: [string, string][] }>(fields: T, responseAt: number): T {
  if (!fields.headers.some(([name]) => name === "date"))
    fields.headers.push(["date", new Date(responseAt).toUTCString()]);
  return fields;
}

/**
 * RFC 9110 §6.4.1: responses to HEAD and 1xx, 204 and 304 responses have no body, whatever
 * their Content-Length says (a 304's is the length of the stored representation, §8.6); nor
 * has a 205 (§15.3.6). The runtimes' fetches give a 205 no body whatever it declares (Node's
 * own server sends `res.end("Reset Content")` as 13 bytes of one): read as a body cut short,
 * it was a 502 that counted as a sick origin, and three such URLs opened the breaker.
 */
function hasNoBody(method: string, status: number): boolean {
  return method === "HEAD" || status < 200 || status === 204 || status === 205 || status === 304;
}

/**
 * Content-Length, unless the body was decoded on the way in (then the length is the encoded
 * one); 0 for a 205, which has no content whatever it declares (RFC 9110 §15.3.6).
 */
function declaredLength(headers: Headers, decodes: ContentDecoding, status: number): number | undefined {
  if (status === 205) return 0;
  if (bodyWasDecoded(headers.get("content-encoding"), decodes)) return undefined;
  const raw = headers.get("content-length");
  if (raw === null || !/^\d+$/.test(raw.trim())) return undefined;
  return Number(raw);
}

/** What the runtime's client is told of the transport: a streamed body's duplex, and whether a kept-alive connection may carry the request. */
function transportInit(request: OriginRequest): { duplex?: "half"; reuseConnection?: boolean } {
  return {
    ...(request.body instanceof ReadableStream ? { duplex: "half" } : {}),
    ...(request.oneClient === true ? { reuseConnection: true } : {}),
  };
}
