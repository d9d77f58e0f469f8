import type { OriginCallEvent } from "../core/origin/guarded-call.ts";

/** One JSON line per event, as Workers Logs index them. */
export function log(level: "warn" | "error", msg: string, error: unknown): void {
  const line = JSON.stringify({ level, msg, error: error instanceof Error ? error.message : String(error) });
  if (level === "error") console.error(line);
  else console.warn(line);
}

/**
 * A failed origin call (no answer, or a 5xx) as one warn line naming the key and why, the
 * same line the Node server logs: one per call the guard let through, so an outage logs a
 * few per probe interval, not one per request.
 */
export function logFailedOriginCall(event: OriginCallEvent): void {
  const key = event.key !== undefined ? { key: event.key } : {};
  if (event.outcome === "error")
    console.warn(JSON.stringify({ level: "warn", msg: "origin call failed", ...key, error: event.error ?? "unknown" }));
  else if (event.outcome === "5xx")
    console.warn(JSON.stringify({ level: "warn", msg: "origin answered an error", ...key, status: event.status }));
}
