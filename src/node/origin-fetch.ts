import { request as httpRequest, type ClientRequest, type IncomingMessage } from "node:http";
import { createHash } from "node:crypto";
import { request as httpsRequest } from "node:https";
import { Readable, type Duplex } from "node:stream";
import { HerdlessError } from "../core/errors.ts";
import { originAgent } from "./origin-agents.ts";
import type { FetchLike, OriginFetchInit } from "../core/origin/origin-client.ts";
import { mayRepeat } from "../core/origin/repeat.ts";
import { HANDSHAKE_GUID, switchFault } from "../core/origin/websocket-handshake.ts";
import { fieldsOf, inOrder } from "./origin-fields.ts";
import { sendUpload } from "./upload-coalesce.ts";
import type { ContentDecoding } from "../core/origin/response-fields.ts";

const TRANSFORMING_CODINGS = new Set(["gzip", "x-gzip", "deflate", "compress", "x-compress", "br", "zstd"]);

/** Methods node:http sends without framing when they have no body (it chunks every other one). */
const BODILESS_BY_DEFAULT = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"]);

/** RFC 9110 §6.4.1: these statuses never carry content (and a Response refuses a body for them). */
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/**
 * Node's origin `fetch`, on `node:http` rather than the global `fetch` (undici), which adds
 * request headers the client never sent (`Sec-Fetch-Mode: cors`; `User-Agent: node`,
 * `Accept` and `Accept-Language: *` when absent), sets `Host` from the URL whatever
 * the request says, and decodes gzip, deflate and br bodies. This one sends the headers it
 * is given as they are (`Host` included; Node adds only `Connection` and the body's
 * framing), never follows redirects, streams both bodies, keeps a relayed request's
 * connection alive (a fill's answer comes on a connection of its own: `originAgent`),
 * and stops at the caller's `AbortSignal` (the deadline of fetchOrigin). It decodes no
 * Content-Encoding: the bytes and their label pass through together ({@link nodeDecoding}).
 *
 * Its parser is Node's strict one: an answer whose head is malformed (a field name that is
 * not a token, a control character in a value, Content-Length with Transfer-Encoding) fails
 * whole with an error naming the fault ({@link malformedAnswer}); fetchOrigin makes it a 502.
 * `insecureHTTPParser` would keep such answers, but it also takes Content-Length together
 * with Transfer-Encoding, which desyncs the responses on a kept-alive connection.
 *
 * A request written on a kept-alive connection the origin was closing at that moment is asked
 * again once on a new connection ({@link staleConnection}), as Varnish and nginx do.
 *
 * Interim answers (Node's `information` event: every 1xx but `101`) go to `init.onInterim`
 * with their fields as received; fetchOrigin decides which reach the client.
 *
 * @example
 * const stack = localStack({ config, logger, fetch: nodeOriginFetch, decodes: nodeDecoding });
 */
export const nodeOriginFetch: FetchLike = (url, init) => exchange(url, init, "pooled");

/**
 * Whether a request that failed on a kept-alive connection is asked again, once, on a new one.
 * An origin may close an idle connection at the moment a request is written on it (its idle
 * timeout shorter than the agent's and not announced, a restart): the connection was
 * reset before any answer, through no fault of the request or of the origin's health. As
 * Varnish, nginx and curl do, such a request is repeated on a fresh connection instead of
 * becoming a 502 and a failure against the breaker, but only an idempotent one with no body
 * to replay (RFC 9110 §9.2.2), and never a request whose connection was new: an origin that
 * resets those is failing, and asking twice would double the load on it.
 */
function staleConnection(outgoing: ClientRequest, error: Error & { code?: unknown }, init: OriginFetchInit): boolean {
  return outgoing.reusedSocket && (error.code === "ECONNRESET" || error.code === "EPIPE") && mayRepeat(init);
}

/** One exchange with the origin: on a connection of the agent's pool, or on a new one of its own. */
function exchange(url: string, init: OriginFetchInit, connection: "pooled" | "new"): Promise<Response> {
  return new Promise<Response>((resolveCall, rejectCall) => {
    // Whether the call is settled: its `close` builds no error (a stack trace, every exchange) for nothing.
    let settled = false;
    const resolve = (answer: Response | PromiseLike<Response>) => {
      settled = true;
      resolveCall(answer);
    };
    const reject = (error: unknown) => {
      settled = true;
      rejectCall(error);
    };
    const target = new URL(url);
    const secure = target.protocol === "https:";
    const signal = init.signal ?? undefined;
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const headers = inOrder(init.headers);
    // The origin's own host unless the caller chose another (origin.hostHeader).
    if (!headers.some(([name]) => name === "host")) headers.unshift(["host", target.host]);
    const body = init.body;
    // Every body is framed. Without a Content-Length, node:http writes the body of a DELETE,
    // OPTIONS (or any method it does not chunk by default) raw, unframed: the origin reads the
    // request as bodiless and the body as the next request on the connection, one the client
    // wrote whole (request smuggling past every header rule herdless applies).
    const framed = headers.some(([name]) => name === "content-length");
    if (body !== null && body !== undefined && !framed) headers.push(["transfer-encoding", "chunked"]);
    // And no body is no body: node:http would send an empty chunked one for a POST or PURGE.
    else if ((body === null || body === undefined) && !framed && !BODILESS_BY_DEFAULT.has(init.method ?? "GET"))
      headers.push(["content-length", "0"]);
    const outgoing = (secure ? httpsRequest : httpRequest)(target, {
      method: init.method ?? "GET",
      // Arrays keep the caller's names, order and Host as given (no default Host is added then).
      headers: headers.flat(),
      agent: originAgent(init, secure, connection === "new"),
      ...(signal ? { signal } : {}),
    });
    // Every field of the answer, as workerd reads them: node:http keeps the first 2,000 by
    // default and drops the rest unheard, so a `Cache-Control: private` or a `Set-Cookie` after
    // 2,000 short fields (still within the 16 KiB head limit, which bounds them) went unseen and
    // the visitor's page was stored and served to the next one.
    outgoing.maxHeadersCount = 0;
    let heard = false;
    outgoing.once("error", (error) => {
      // On a new connection, outside the pool: another of its kept-alive ones may be as stale.
      if (connection === "pooled" && !heard && staleConnection(outgoing, error, init))
        resolve(exchange(url, init, "new"));
      else reject(signal?.aborted ? signal.reason : (malformedAnswer(error, url) ?? error));
    });
    outgoing.once("response", (incoming) => settle(toResponse(incoming, init.method ?? "GET", url), resolve, reject));
    const asked = headers.some(([name]) => name === "upgrade");
    const key = headers.find(([name]) => name === "sec-websocket-key")?.[1];
    outgoing.once("upgrade", onSwitch(asked ? { key } : undefined, url, resolve, reject));
    // Whatever else ends the exchange without an answer or an error settles the call too
    // (after an answer, an error or a switch it has nothing to settle).
    outgoing.once("close", () => {
      if (settled) return;
      const closed = `origin closed the connection for ${url} without an answer`;
      reject(signal?.aborted ? signal.reason : new HerdlessError("ORIGIN_NETWORK", closed));
    });
    const { onInterim } = init;
    outgoing.on("information", (info) => {
      heard = true;
      onInterim?.(info.statusCode, fieldsOf(info.rawHeaders));
    });
    if (!send(outgoing, body)) {
      outgoing.destroy();
      reject(new TypeError("nodeOriginFetch sends string, bytes or stream bodies"));
    }
  });
}

/**
 * node:http hands a 101 to "upgrade" listeners (with none, it destroys the socket silently:
 * the call hung past its deadline, holding its permit). The switch a tunnel asked for (its
 * request carries Upgrade and this `handshake`'s key) is its answer once RFC 6455 §4.1 says it
 * is one ({@link verified}); any other is the odd status it is (a clean 502).
 */
function onSwitch(
  handshake: { key: string | undefined } | undefined,
  url: string,
  resolve: (response: Response | PromiseLike<Response>) => void,
  reject: (error: unknown) => void,
): (incoming: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (incoming, socket, head) => {
    // node:http detached the socket and its 'error' listener: until the tunnel splices it
    // (after the engine's own awaits, a guard release over Redis among them), an origin that
    // resets it would raise an unheard 'error' and end the process. Its close is what counts.
    socket.on("error", () => socket.destroy());
    // Resolved with the check's promise at once: the request's 'close', which follows this
    // event, can no longer settle the call as a connection closed without an answer.
    if (handshake) return resolve(verified(handshake.key, url, incoming, socket, head));
    socket.destroy();
    const status = incoming.statusCode ?? 0;
    reject(
      new HerdlessError(
        "ORIGIN_STATUS",
        `origin answered ${url} with status ${status} (a protocol switch herdless never asked for)`,
      ),
    );
  };
}

/**
 * The origin's 101 to a WebSocket handshake as a switch, if it is one (core `switchFault`:
 * `Upgrade: websocket` and the `Sec-WebSocket-Accept` of the `key` sent). A 101 that is not
 * may be an origin still speaking HTTP on that connection: tunnelled, the client's raw requests
 * would reach it past every rule herdless applies. Its socket is closed and the call fails with
 * ORIGIN_STATUS (a 502 naming the fault; the origin answered, so never a failure for the breaker).
 */
async function verified(
  key: string | undefined,
  url: string,
  incoming: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<Response> {
  // node:http joins a repeated field with ", ": two Accepts match no key, two Upgrades no "websocket".
  const fault = await switchFault(key, incoming.headers.upgrade, incoming.headers["sec-websocket-accept"], acceptOf);
  if (fault === undefined) return switched(incoming, socket, head);
  socket.destroy();
  throw new HerdlessError("ORIGIN_STATUS", `origin answered ${url} with a 101 that is no WebSocket switch: ${fault}`);
}

/**
 * The accept of `key`, computed at once: with Web Crypto's asynchronous digest the origin's
 * close (an origin that sends its bytes and ends) could come before the tunnel took the socket.
 */
const acceptOf = (key: string): string =>
  createHash("sha1")
    .update(key + HANDSHAKE_GUID)
    .digest("base64");

/** The origin's side of each switched connection, by the answer {@link nodeOriginFetch} gave for its 101. */
const upgraded = new WeakMap<Response, UpgradedSocket>();

/** A connection the origin switched to another protocol, and the bytes it sent after its 101. */
export interface UpgradedSocket {
  socket: Duplex;
  head: Buffer;
}

/**
 * The socket behind a 101 {@link nodeOriginFetch} answered (origin-client.ts
 * SwitchedOriginResponse `connection`); undefined for any other answer.
 *
 * @example
 * const origin = upgradedSocket(opening.connection); // { socket, head }
 */
export function upgradedSocket(response: Response): UpgradedSocket | undefined {
  return upgraded.get(response);
}

/** A 101 as an answer (no Response is built with it: carried on a placeholder), its socket kept aside. */
function switched(incoming: IncomingMessage, socket: Duplex, head: Buffer): Response {
  const response = new Response(null, { status: 200, headers: fieldsOf(incoming.rawHeaders) });
  Object.defineProperty(response, "status", { value: 101 });
  upgraded.set(response, { socket, head });
  return response;
}

/** Writes the request's body (none ends the request); false for a body of a kind it cannot send. */
function send(outgoing: ClientRequest, body: OriginFetchInit["body"]): boolean {
  if (body === null || body === undefined) outgoing.end();
  else if (body instanceof ReadableStream) sendUpload(outgoing, body as ReadableStream<Uint8Array>);
  else if (typeof body === "string" || body instanceof Uint8Array) outgoing.end(body);
  else if (body instanceof ArrayBuffer) outgoing.end(new Uint8Array(body));
  else return false;
  return true;
}

/**
 * The error for an origin answer Node's parser refused (its codes are llhttp's, `HPE_*`):
 * it names the fault, so the 502 a client gets and the log say what the origin sent wrong
 * instead of a bare "Parse Error". Undefined for every other error (refused, reset, TLS).
 */
function malformedAnswer(error: Error & { code?: unknown }, url: string): HerdlessError | undefined {
  if (typeof error.code !== "string" || !error.code.startsWith("HPE_")) return undefined;
  const fault = error.message.replace(/^Parse Error: /, "");
  // The origin answered, however badly (a field an attacker had it reflect can be enough):
  // ORIGIN_STATUS, as an odd status is, never a sign of an unwell origin for the breaker.
  return new HerdlessError(
    "ORIGIN_STATUS",
    `the origin's answer for ${url} is not valid HTTP/1.1 (${fault}, ${error.code}); herdless refuses a malformed answer whole`,
    { cause: error },
  );
}

/** Resolves with an answer, rejects with an error. */
function settle<T>(outcome: T | Error, resolve: (value: T) => void, reject: (error: Error) => void): void {
  if (outcome instanceof Error) reject(outcome);
  else resolve(outcome);
}

function toResponse(incoming: IncomingMessage, method: string, url: string): Response | HerdlessError {
  const status = incoming.statusCode ?? 0;
  // A 101 node:http did not take for a switch (no Upgrade, or no Connection: upgrade): a switch
  // to nothing, which no tunnel can carry nor client be given (a clean 502, never a silent close).
  if (status === 101) {
    incoming.destroy();
    const fault = "no Upgrade with Connection: upgrade";
    return new HerdlessError("ORIGIN_STATUS", `origin answered ${url} with status 101 naming no protocol (${fault})`);
  }
  // herdless sends no TE (RFC 9112 §6.1): bytes in a coding that transforms them (`gzip, chunked`) would
  // be stored and served undecoded, unlabelled. Other tokens' bytes pass as sent (the field never does).
  const coding = incoming.headers["transfer-encoding"]
    ?.split(",")
    .find((c) => TRANSFORMING_CODINGS.has(c.trim().toLowerCase()));
  if (coding !== undefined) {
    incoming.destroy();
    return new HerdlessError(
      "ORIGIN_STATUS",
      `origin answered ${url} in transfer coding "${coding.trim()}", one herdless cannot undo`,
    );
  }
  const headers = fieldsOf(incoming.rawHeaders);
  const noBody = method === "HEAD" || NULL_BODY_STATUSES.has(status) || status < 200 || status > 599;
  if (noBody) incoming.resume();
  const body = noBody ? null : (Readable.toWeb(incoming) as ReadableStream<Uint8Array>);
  if (status >= 200 && status <= 599) return new Response(body, { status, headers });
  // A status no Response can be built with (fetchOrigin answers those with a clean 502):
  // carried on a placeholder so the caller sees what the origin said.
  const odd = new Response(null, { status: 200, headers });
  Object.defineProperty(odd, "status", { value: status });
  return odd;
}

/**
 * {@link nodeOriginFetch} decodes nothing: every body arrives with the Content-Encoding it has.
 *
 * @example
 * bodyWasDecoded("gzip", nodeDecoding); // false
 */
export const nodeDecoding: ContentDecoding = () => false;
