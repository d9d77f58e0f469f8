/** One JSON line per event, as Workers Logs index them. */
export function log(level: "warn" | "error", msg: string, error: unknown): void {
  const line = JSON.stringify({ level, msg, error: error instanceof Error ? error.message : String(error) });
  if (level === "error") console.error(line);
  else console.warn(line);
}
