import type { ServerResponse } from "node:http";
import { unsentBodyFailure } from "../core/http/failure-answer.ts";
import type { EngineResponse } from "../core/http/respond.ts";

/** Writes an engine answer: stored bytes in one `end`, streamed bodies chunk by chunk with back-pressure. */
export async function write(res: ServerResponse, response: EngineResponse): Promise<void> {
  const flat: string[] = [];
  for (const [name, value] of response.headers) flat.push(name, value);
  const body = response.body;
  if (body instanceof ReadableStream) {
    await writeStream(res, () => res.writeHead(response.status, flat), body, response);
    return;
  }
  res.writeHead(response.status, flat);
  if (body === null) res.end();
  else res.end(body);
}

/**
 * A streamed body (one origin fetch read by every request waiting on it), read straight
 * from its reader: a spike's hundreds of waiters each paid a Node stream, a web-stream
 * adapter and a pipeline (`Readable.fromWeb` + `pipeline`) for what is often one chunk.
 * The head leaves with the first chunk when that is already here (one write), or on the
 * next turn of the event loop: the client's first byte never waits for the origin's, as an
 * event stream or a long poll needs. A body of declared length waits for its first bytes
 * instead (no client reads a fixed-length answer as it trickles in): one that breaks off
 * before any is answered 502, not with a head that then hangs up, whatever the timing.
 * A client that goes away cancels its reader (the fetch goes on for the others); a body
 * that fails mid-way ends the connection ({@link abort}), so the client sees an aborted
 * answer, never a short one that looks complete. One that fails before its head left is
 * answered with {@link unsentBodyFailure} instead.
 */
async function writeStream(
  res: ServerResponse,
  writeHead: () => void,
  body: ReadableStream<Uint8Array>,
  response: EngineResponse,
): Promise<void> {
  const reader = body.getReader();
  let headed = false;
  const sendHead = () => {
    if (headed) return;
    headed = true;
    writeHead();
  };
  const head = declaresLength(response.headers)
    ? undefined
    : setImmediate(() => {
        sendHead();
        res.flushHeaders();
      });
  let left = false;
  const gone = () => {
    left = true;
    void reader.cancel().catch(() => undefined);
  };
  res.once("close", gone);
  // A client that hung up before the answer was ready ('close' came and went): nothing would
  // ever read for it. Its reader held a shared download back for everyone else until the
  // laggard cut (30 s), and a relayed one its origin connection and permit as long.
  if (clientGone(res)) gone();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      clearImmediate(head);
      sendHead();
      if (done || left) break;
      if (!res.write(value)) await drained(res);
    }
    if (!left) res.end();
  } catch (error) {
    // Failed before its head left (the failure was already known when writing began, as
    // behind a fleet's guard round trip): the client is told what went wrong, not hung up on.
    if (left) res.destroy();
    else if (headed) abort(res);
    else await write(res, unsentBodyFailure(error, response.cacheStatus));
  } finally {
    clearImmediate(head);
    res.off("close", gone);
  }
}

/**
 * Ends an answer whose body failed part-way: what was written still leaves (a destroy right
 * after a write drops it: no answer at all), then the connection closes short of the body's
 * end (its Content-Length, or a chunked body's last chunk): never a body that looks complete.
 */
function abort(res: ServerResponse): void {
  if (res.socket) res.socket.end();
  else res.destroy();
}

/** Resolves once `res` can take more (or is gone). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    if (clientGone(res)) return resolve();
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/**
 * Whether the client's connection is gone: a write would wait for a 'drain' that never comes.
 * The request's socket, not the answer's: a pipelined answer has none until its turn.
 */
function clientGone(res: ServerResponse): boolean {
  return res.destroyed || res.req.socket.destroyed;
}

/** Whether the answer declares a body of non-zero length (Content-Length). */
function declaresLength(headers: readonly (readonly [string, string])[]): boolean {
  for (const [name, value] of headers) if (name.toLowerCase() === "content-length") return Number(value) > 0;
  return false;
}
