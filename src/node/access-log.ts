import type { IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { accessLine } from "../core/admin/access-line.ts";

/** What the handler learns of a request's answer as it goes; written when the answer ends. */
export interface AccessRecord {
  /** The answer's `Cache-Status` (null: herdless wrote none, as for the admin API). */
  cacheStatus: string | null;
}

/** Starts the access-log line of one request; the handler fills the record it returns. */
export type AccessLog = (req: IncomingMessage, res: ServerResponse) => AccessRecord;

/**
 * The Node access log (`log.access`, core `accessLine`): a line per request, written when
 * its answer has been handed to the socket whole or the connection closed before (then
 * `complete` is false). Its lines do not depend on `log.level`; the CLI writes them on
 * stdout, apart from the logs on stderr. Built only when the option is on: a request costs
 * nothing more without it.
 *
 * @example
 * const access = accessLog((line) => process.stdout.write(line));
 * const record = access(req, res); record.cacheStatus = "herdless; hit";
 */
export function accessLog(write: (line: string) => void): AccessLog {
  return (req, res) => {
    const startedAt = performance.now();
    const record: AccessRecord = { cacheStatus: null };
    res.once("close", () => {
      const facts = {
        method: req.method ?? "",
        target: req.url ?? "",
        host: req.headers.host ?? null,
        status: res.statusCode,
        cacheStatus: record.cacheStatus,
        ms: performance.now() - startedAt,
        client: req.socket.remoteAddress ?? null,
        complete: res.writableFinished,
      };
      write(`${accessLine(facts, new Date())}\n`);
    });
    return record;
  };
}
