import { failedCallLine, type OriginCallEvent } from "../core/origin/guarded-call.ts";

/** One JSON line per event, as Workers Logs index them. */
export function log(level: "warn" | "error", msg: string, error: unknown): void {
  const line = JSON.stringify({ level, msg, error: error instanceof Error ? error.message : String(error) });
  if (level === "error") console.error(line);
  else console.warn(line);
}

/** A failed origin call as the warn line the Node server logs too ({@link failedCallLine}). */
export function logFailedOriginCall(event: OriginCallEvent): void {
  const line = failedCallLine(event);
  if (line) console.warn(JSON.stringify({ level: "warn", msg: line.msg, ...line.fields }));
}
