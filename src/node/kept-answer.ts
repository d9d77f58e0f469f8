import { OutgoingMessage, ServerResponse, STATUS_CODES } from "node:http";

/**
 * A hit's answer as node:http wrote it, kept to be written again as is: the head Node joined,
 * and for a small body, for a second, the head and the body in one buffer.
 *
 * Why: `writeHead` validates every field name and value and joins the head again on each
 * call, and `end` then hands the socket a string and a buffer to join in a `writev`, although
 * a hit's head changes at most once a second (Age, the ttl). That was the largest piece left
 * of a hit's cost that did not depend on the request: with the same fields, a server writing
 * a kept head and body as one buffer served 13 % more hits than one calling `writeHead`,
 * both pinned to one core (bench/README.md, "The Node hit path: the answer written once").
 *
 * node:http has no public API for it, so this module reads and writes `OutgoingMessage`
 * fields (`_header`, `_headerSent`, `_contentLength`, the keep-alive state): long-lived
 * internals that middleware such as `compression` reads too, but internals. It stays safe if
 * they change: an answer is kept only when, after a real `writeHead`, they hold what this
 * module expects, and it is written again only onto a response in the same state as the one
 * it was taken from; otherwise the caller writes with `writeHead` and `end` as before.
 * test/node/kept-answer.test.ts compares its bytes with the engine's.
 */
export interface KeptAnswer {
  /** The status line, fields, `Connection`/`Keep-Alive` and the empty line, as Node joined them. */
  readonly head: string;
  readonly contentLength: number;
  /**
   * `head` then the body, for a body up to {@link JOINED_BODY_MAX} bytes, while
   * {@link JoinedAnswers} keeps it (it lets go of it within a second or two).
   */
  whole: Buffer | undefined;
  readonly status: number;
  readonly statusMessage: string;
  /** The server settings Node wrote into the `Keep-Alive` field. */
  readonly keepAliveTimeout: unknown;
  readonly maxRequestsPerSocket: unknown;
}

/** Larger bodies are written after their head as they are: copying them would cost more than a `writev`. */
const JOINED_BODY_MAX = 64 * 1024;

/**
 * The bytes of joined answers made in one second, at most: hits of pages past it in that
 * second are written head, then body (what a join saves is ~5 % of a small hit's cost).
 */
const JOINED_BYTES_PER_SECOND = 8 * 1024 * 1024;

/**
 * Bounds the memory joined answers take. A join copies the body; kept with its entry, every
 * entry hit once would hold a second copy of its body outside `cache.maxBytes` until evicted
 * (an attacker asking for each page twice doubles the cache's memory). Joins are made for one
 * second at a time, up to {@link JOINED_BYTES_PER_SECOND}, and the first join of a new second
 * lets go of the last second's: a hot page is joined again once a second (its Age moves once
 * a second anyway), a page hit once holds its copy for a second or two. Holds no entry.
 */
export class JoinedAnswers {
  private second = Number.NaN;
  private bytes = 0;
  private readonly joined: KeptAnswer[] = [];

  /** Joins `kept`'s head with `body`, the page's body, when this second's bytes allow (`now`: epoch ms). */
  join(kept: KeptAnswer, body: Buffer, now: number): void {
    const second = Math.floor(now / 1000);
    if (second !== this.second) {
      for (const answer of this.joined) answer.whole = undefined;
      this.joined.length = 0;
      this.bytes = 0;
      this.second = second;
    }
    if (body.byteLength > JOINED_BODY_MAX || this.bytes + body.byteLength > JOINED_BYTES_PER_SECOND) return;
    kept.whole = Buffer.concat([Buffer.from(kept.head, "latin1"), body]);
    this.bytes += kept.whole.byteLength;
    this.joined.push(kept);
  }
}

/** The node:http internals read and written here (lib/_http_outgoing.js, lib/_http_server.js). */
interface Internals {
  _header: string | null;
  _headerSent: boolean;
  _contentLength: number | null;
  _hasBody: boolean;
  _last: boolean;
  _removedConnection: boolean;
  _expect_continue: boolean;
  _keepAliveTimeout: unknown;
  _maxRequestsPerSocket: unknown;
  chunkedEncoding: boolean;
  shouldKeepAlive: boolean;
  maxRequestsOnConnectionReached: boolean;
  strictContentLength: boolean;
}

/**
 * The answer `res` was just given by `writeHead(status, flat)`, to be ended with `body`,
 * when it can be written again onto another response in the same state ({@link writeKept}):
 * a GET's keep-alive answer with a body framed by `Content-Length` and a Date of its own
 * (`flat` carries one; Node writes its own clock's otherwise), and no field but `flat`'s.
 * Undefined for anything else (HEAD, 204, 304, a closing connection, fields an embedding
 * application set). Call it after `writeHead`, before `end`.
 */
export function keepAnswer(
  res: ServerResponse,
  status: number,
  flat: readonly string[],
  body: Buffer,
): KeptAnswer | undefined {
  const r = res as unknown as Internals;
  if (
    typeof r._header !== "string" ||
    r._headerSent !== false ||
    r._hasBody !== true ||
    r._last !== false ||
    r.chunkedEncoding !== false ||
    r._contentLength !== body.byteLength ||
    res.statusMessage !== STATUS_CODES[status] ||
    !ordinary(r) ||
    // Fields set by an embedding application belong to this response only (a Set-Cookie).
    res.getHeaderNames().length !== 0 ||
    !nodesOwn(res) ||
    !hasDate(flat)
  )
    return undefined;
  return {
    head: r._header,
    contentLength: body.byteLength,
    whole: undefined,
    status,
    statusMessage: res.statusMessage!,
    keepAliveTimeout: r._keepAliveTimeout,
    maxRequestsPerSocket: r._maxRequestsPerSocket,
  };
}

/**
 * Writes `kept` and `body` (the body it was kept with) as the whole answer to `res`, its head
 * only for a HEAD request (`headOnly`), and ends it, as `writeHead` and `end` would have, and
 * returns true; false, having done nothing, when `res` is not in the state `kept` was taken
 * in (a closing connection, its last request, an `Expect`, fields set by an embedding
 * application or its methods wrapped, another server's keep-alive settings).
 */
export function writeKept(res: ServerResponse, kept: KeptAnswer, body: Buffer, headOnly: boolean): boolean {
  const r = res as unknown as Internals;
  if (
    r._header !== null ||
    !nodesOwn(res) ||
    !ordinary(r) ||
    r._keepAliveTimeout !== kept.keepAliveTimeout ||
    r._maxRequestsPerSocket !== kept.maxRequestsPerSocket ||
    r.strictContentLength === true ||
    res.statusMessage !== undefined ||
    res.getHeaderNames().length !== 0
  )
    return false;
  res.statusCode = kept.status;
  res.statusMessage = kept.statusMessage;
  r._contentLength = kept.contentLength;
  r._header = kept.head;
  if (headOnly) {
    r._headerSent = false;
    res.end();
  } else if (kept.whole) {
    // The head travels inside the one buffer: Node must not write it again.
    r._headerSent = true;
    res.end(kept.whole);
  } else {
    r._headerSent = false;
    res.end(body);
  }
  return true;
}

/**
 * Whether `res` writes with Node's own methods: middleware of an embedding application that
 * wraps `writeHead` (to add fields as the head goes out: a session's cookie, a timing) or
 * `write`/`end` (to compress) must see every answer go through them.
 */
function nodesOwn(res: ServerResponse): boolean {
  return res.writeHead === WRITE_HEAD && res.end === END && res.write === WRITE;
}

const WRITE_HEAD = ServerResponse.prototype.writeHead;
const END = OutgoingMessage.prototype.end;
const WRITE = OutgoingMessage.prototype.write;

/** A response whose head Node ends with `Connection: keep-alive` (and its `Keep-Alive`). */
function ordinary(r: Internals): boolean {
  return (
    r.shouldKeepAlive === true &&
    r.maxRequestsOnConnectionReached !== true &&
    r._expect_continue !== true &&
    r._removedConnection !== true
  );
}

function hasDate(flat: readonly string[]): boolean {
  for (let i = 0; i < flat.length; i += 2) if (flat[i]!.toLowerCase() === "date") return true;
  return false;
}
