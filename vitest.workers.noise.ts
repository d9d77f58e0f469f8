/**
 * Global setup of the workers test project: keeps workerd's expected disconnect reports out
 * of the test output, so that a real error stands out.
 *
 * Chaos tests make the origin reset connections and cut bodies short on purpose; workerd
 * then logs each broken socket itself ("Network connection lost", "premature EOF"), with a
 * native stack trace, even though herdless handled the failure (the tests assert how). The
 * pool prints these through its own fixed log handler, which a project cannot configure, so
 * the lines are dropped here, by their exact wording. Anything else workerd prints passes.
 */
const EXPECTED = [
  "jsg.Error: Network connection lost.",
  "stack = Error: Network connection lost.",
  "disconnected: premature EOF in HTTP entity body",
  "disconnected: stream disconnected prematurely",
  "disconnected: WebSocket peer disconnected",
];

type Write = typeof process.stderr.write;

function quiet(stream: NodeJS.WriteStream): void {
  const original: Write = stream.write.bind(stream);
  // A native stack follows an expected report as a line of its own.
  let lastWasExpected = false;
  const filtered = ((chunk: unknown, ...rest: unknown[]) => {
    const text = typeof chunk === "string" ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk).toString() : "";
    const expected = EXPECTED.some((line) => text.includes(line));
    const trailingStack = lastWasExpected && text.startsWith("stack: ") && text.includes("workerd@");
    lastWasExpected = expected;
    if (expected || trailingStack) {
      const callback = rest.find((arg): arg is () => void => typeof arg === "function");
      callback?.();
      return true;
    }
    return (original as (chunk: unknown, ...rest: unknown[]) => boolean)(chunk, ...rest);
  }) as Write;
  stream.write = filtered;
}

/** Stays on until the process exits: workerd's last sockets close after the teardown. */
export default function setup(): void {
  quiet(process.stderr);
  quiet(process.stdout);
}
