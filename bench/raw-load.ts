/**
 * A wrk-like request loop for the hit path: one keep-alive socket, a request written as
 * bytes made once, just enough of each answer parsed to frame it (status line,
 * Content-Length, Cache-Status, Retry-After), then the next request. Node's http client
 * costs the client about as much CPU as a cache hit costs the server; on 2 shared cores that
 * caps both servers of a hit-path pair alike and hides their difference. Answers must carry
 * Content-Length (hits and the bare servers' replays do); one that does not (chunked) ends
 * the connection as an error.
 */
import { connect } from "node:net";

export interface RawOutcome {
  status: number;
  retryAfter: boolean;
  cacheStatus: string;
  /** hrtime ns when the head arrived (the body comes in the same read on loopback) */
  firstByteNs: bigint;
}

const HEAD_END = Buffer.from("\r\n\r\n");

function field(head: string, name: string): string | undefined {
  const at = head.indexOf(`\r\n${name}:`);
  if (at < 0) return undefined;
  const end = head.indexOf("\r\n", at + 2);
  return head.slice(at + name.length + 3, end < 0 ? undefined : end).trim();
}

/**
 * Sends requests on one connection to `base` until `more()` says stop, calling `done` with
 * each answer (or the error that ended the connection) and the hrtime ns it was sent at.
 */
export function rawConnection(
  base: URL,
  host: string,
  nextPath: () => string,
  more: () => boolean,
  timeoutMs: number,
  done: (outcome: RawOutcome | Error, startedNs: bigint) => void,
): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: base.hostname, port: Number(base.port), noDelay: true });
    let buffered: Buffer = Buffer.alloc(0);
    let need = -1;
    let head: RawOutcome | undefined;
    let startedNs = 0n;
    let open = true;
    const finish = (error?: Error): void => {
      if (!open) return;
      open = false;
      if (error) done(error, startedNs);
      socket.destroy();
      resolve();
    };
    const send = (): void => {
      if (!more()) return finish();
      startedNs = process.hrtime.bigint();
      socket.write(`GET ${nextPath()} HTTP/1.1\r\nHost: ${host}\r\n\r\n`, "latin1");
    };
    socket.setTimeout(timeoutMs, () => finish(new Error(`timeout after ${timeoutMs} ms`)));
    socket.once("connect", send);
    socket.once("error", (error) => finish(error));
    socket.once("close", () => finish(new Error("connection closed by the server")));
    socket.on("data", (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      for (;;) {
        if (need < 0) {
          const end = buffered.indexOf(HEAD_END);
          if (end < 0) return;
          const text = buffered.toString("latin1", 0, end).toLowerCase();
          const length = field(text, "content-length");
          if (length === undefined) return finish(new Error("an answer without Content-Length"));
          head = {
            status: Number(text.slice(9, 12)),
            retryAfter: field(text, "retry-after") !== undefined,
            cacheStatus: field(text, "cache-status") ?? "",
            firstByteNs: process.hrtime.bigint(),
          };
          need = end + 4 + Number(length);
        }
        if (buffered.length < need || head === undefined) return;
        buffered = buffered.subarray(need);
        need = -1;
        done(head, startedNs);
        send();
        if (!open) return;
      }
    });
  });
}
