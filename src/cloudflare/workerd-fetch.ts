import { HerdlessError } from "../core/errors.ts";
import type { OriginFetchInit } from "../core/origin/origin-client.ts";
import { mayRepeat } from "../core/origin/repeat.ts";
import { declaredLength } from "../core/origin/upload.ts";
import { throughFixedLength } from "./convert.ts";

/**
 * How long this isolate has heard nothing from an origin before a lost request counts as one
 * written on a connection the origin closed while idle: origins close idle connections after
 * seconds (Node 5 s, Apache 5 s, gunicorn 2 s, nginx 75 s), never within one.
 */
const IDLE_MS = 1_000;

/** When this isolate last had an answer from each origin (scheme, host and port); none after a failure. */
const answeredAt = new Map<string, number>();

/**
 * workerd's `fetch()`, asked once more when a request fails on what was likely a pooled
 * kept-alive connection the previous exchange left unusable.
 *
 * workerd pools its connections to the origin and does not repeat a request written on one the
 * origin closed at that moment (an origin's idle timeout, Node's 5 s by default, racing the
 * pool; workers-sdk#14848): the request fails as `Network connection lost.`, a 502 and a failure
 * against the breaker for an origin that is well. Varnish and nginx repeat such a request on a
 * new connection. workerd names a refused connection the same way, so the request is repeated
 * only when the last exchange with this origin was an answer, at least `IDLE_MS` ago: the
 * origin was well when it last answered, and its connections idle since long enough for it to
 * close them. An origin that fails right after answering is failing; one that is found down
 * after a quiet spell costs one repeat per isolate, then none until it answers again.
 *
 * workerd also leaves bytes of an answer on the connection, and reads them as the next
 * request's answer: a chunked answer's trailer section (RFC 9112 §7.1.2, which kj's client does
 * not parse) or bytes past an answer's `Content-Length`. The next request on that connection,
 * for any URL, fails as an answer workerd could not parse (`Invalid response status line` in
 * its log), at once however recently the connection was used, so that failure is repeated,
 * on a new connection (workerd drops the one it could not parse), whenever the last exchange
 * with this origin was an answer: one extra request for an origin that really answers
 * malformed, then none until it answers well again. Only an idempotent request without a body
 * is repeated (RFC 9110 §9.2.2).
 */
export async function answerOf(url: string, given: OriginFetchInit): Promise<Response> {
  const origin = new URL(url).origin;
  // Past Cloudflare's own cache: an origin hostname proxied through Cloudflare (orange-clouded)
  // has that zone's cache between the Worker and the origin, which keys on no cookie and keeps
  // static extensions whatever was asked. A client's relayed `/account/x.css` (its Cookie:
  // never stored by herdless) could be kept there, and the next fill of that path, anyone's,
  // answered the victim's page from it; fills, revalidations and purges would get its copies
  // too. With it workerd adds `Cache-Control: no-cache` and `Pragma: no-cache` to the request.
  const init: OriginFetchInit = { ...withDeclaredLength(given), cache: "no-store" };
  const attempt = () =>
    fetch(url, init).then(async (response) => {
      answeredAt.set(origin, Date.now());
      await refuseBothFramings(response, url);
      return response;
    });
  try {
    return await attempt();
  } catch (error) {
    const last = answeredAt.get(origin);
    answeredAt.delete(origin);
    if (last === undefined || !mayRepeat(init) || !leftByPool(error, Date.now() - last))
      throw malformedAnswer(error, url) ?? error;
    return attempt().catch((again: unknown) => {
      throw malformedAnswer(again, url) ?? again;
    });
  }
}

/**
 * RFC 9112 §6.1: an answer framed both chunked and by a Content-Length is refused whole (a
 * clean 502 naming it), as Node's parser and the reading behind an interim answer
 * (interim-fetch.ts) refuse it: a smuggling shape, and §6.3 lets a proxy forward it only
 * without the Content-Length. workerd reads such a body chunked but leaves the origin's
 * Content-Length on the answer, so a relayed visitor got that length with the chunked bytes
 * behind it: with `Content-Length: 0`, an empty page that looked complete.
 */
async function refuseBothFramings(response: Response, url: string): Promise<void> {
  if (!response.headers.has("transfer-encoding") || !response.headers.has("content-length")) return;
  await response.body?.cancel().catch(() => undefined);
  throw new HerdlessError(
    "ORIGIN_STATUS",
    `the origin's answer for ${url} is not valid HTTP/1.1 (Transfer-Encoding with Content-Length); herdless refuses a malformed answer whole`,
  );
}

/**
 * An upload streamed to the origin (one past upload.ts's UPLOAD_BUFFER_BYTES) as a stream
 * workerd knows the length of, when its client declared one. workerd sends a stream of unknown
 * length chunked, dropping the Content-Length given with it: every upload over 64 KiB reached
 * the origin without its length, which an origin that needs it refuses (an S3-style PUT's
 * `411`) or misreads (a WSGI app's CONTENT_LENGTH). Through a FixedLengthStream the length
 * goes out, and a body that ends short of it errors, so the origin's request is broken off
 * rather than ended as complete. A client's chunked upload has no length, and stays chunked.
 */
function withDeclaredLength(init: OriginFetchInit): OriginFetchInit {
  const { body } = init;
  if (!(body instanceof ReadableStream)) return init;
  const declared = declaredLength(new Headers(init.headers).get("content-length"));
  if (declared === undefined) return init;
  return { ...init, body: throughFixedLength(body, declared) };
}

/**
 * Whether a failure is one a pooled connection explains, `idleMs` after the origin last
 * answered: a connection lost after a quiet spell (the origin closed it), or an answer workerd
 * could not parse (bytes a previous answer left on the connection).
 */
function leftByPool(error: unknown, idleMs: number): boolean {
  if (!(error instanceof Error)) return false;
  return (error.message === LOST && idleMs >= IDLE_MS) || UNPARSABLE.test(error.message);
}

/** workerd's error for a connection refused, reset or closed before an answer (measured on workerd 2026-04-26). */
const LOST = "Network connection lost.";

/** workerd's error for an answer whose head kj's parser refused, a status line among them (measured on workerd 2026-04-26). */
const UNPARSABLE = /^internal error; reference = /;

/**
 * workerd's errors for an origin answer it could not parse, as measured on workerd 2026-04-26:
 * a head KJ's parser refuses (a field name that is not a token, a NUL in a value, a line
 * without a colon) is an opaque `internal error; reference = …`, and Content-Length fields
 * that disagree are named. A refused or reset connection is `Network connection lost.`
 */
const MALFORMED_ANSWER = [UNPARSABLE, /^invalid Content-Length header value/];

/**
 * The error for an origin answer workerd refused as malformed: the origin answered, however
 * badly, so it is ORIGIN_STATUS (a clean 502 naming it), as Node's strict parser makes it
 * (src/node/origin-fetch.ts), never a sign of an unwell origin. workerd threw them as network
 * failures, which the breaker counted: an attacker who had the origin answer malformed on a few
 * paths of their choice (a header reflecting a NUL from the query) opened it for everyone.
 */
function malformedAnswer(error: unknown, url: string): HerdlessError | undefined {
  if (!(error instanceof Error) || !MALFORMED_ANSWER.some((pattern) => pattern.test(error.message))) return undefined;
  return new HerdlessError(
    "ORIGIN_STATUS",
    `the origin's answer for ${url} is not valid HTTP/1.1 (workerd: ${error.message}); herdless refuses a malformed answer whole`,
    { cause: error },
  );
}
