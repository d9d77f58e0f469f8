/**
 * Global setup of the workers test project: keeps workerd's expected disconnect reports out
 * of the test output, so that a real error stands out.
 *
 * Chaos tests make the origin reset connections and cut bodies short on purpose; workerd
 * then logs each broken socket itself ("Network connection lost", "premature EOF"), with a
 * native stack trace, even though herdless handled the failure (the tests assert how). The
 * pool prints these through its own fixed log handler, which a project cannot configure, so
 * the lines are dropped here, by their exact wording. Anything else workerd prints passes.
 *
 * One more report is expected: test/cloudflare/security-store.test.ts has the origin send a
 * field name that is not a token, and origin-trailers.test.ts leaves a trailer section on a
 * connection where the next answer's status line is read. workerd's HTTP client refuses that
 * answer before any JavaScript sees it; the Worker's `fetch` rejects and herdless answers 502
 * or asks again (the tests assert it), but workerd still logs the refusal, then the same error
 * again as "Uncaught (in promise)" with its reference, even when the rejection is caught (a
 * bare `try { await fetch(url) } catch {}` logs the same lines). Nothing in the Worker can
 * prevent it, so those lines are dropped: the refusal by its wording, the uncaught report only
 * when it carries the reference (wdErrId) of a refusal just dropped, so any other internal
 * error passes.
 *
 * herdless's own line for each failed origin call ("origin call failed", "origin answered an
 * error": src/cloudflare/log.ts) goes too: chaos, outage and breaker tests fail the origin
 * hundreds of times on purpose, and edge-errors.test.ts asserts the lines through a spy.
 *
 * And tests that evict every object on purpose (`abortAllDurableObjects()`, to show that state
 * survives an eviction) abort whatever an object was doing, e.g. an isolate's stats report;
 * workerd reports that call as uncaught in the object, with the abort's own wording.
 */
const EXPECTED = [
  "jsg.Error: Network connection lost.",
  "stack = Error: Network connection lost.",
  "disconnected: premature EOF in HTTP entity body",
  "disconnected: stream disconnected prematurely",
  // A body of known length that ends short (edge-cut-body.test.ts sends one on as a request's body).
  "disconnected: fixed-length pipe ended prematurely",
  // An upload that ends short of its Content-Length (edge-upload-length.test.ts): its origin request is broken off.
  "jsg.Error: the request body came to ",
  "disconnected: WebSocket peer disconnected",
  "stack = Error: Application called abortAllDurableObjects().",
  '"msg":"origin call failed"',
  '"msg":"origin answered an error"',
];

/** workerd's refusals of an origin answer whose header block (RFC 9110 §5.1) or status line does not parse. */
const REFUSED = [
  "protocolError.description = The headers sent by the server are not valid.",
  "protocolError.description = Invalid response status line",
];

/** References of refusals already dropped: their "Uncaught (in promise)" echo goes too. */
const refusedReferences = new Set<string>();

/** Whether `text` is an expected report, remembering the reference of a refused header block. */
function isExpected(text: string): boolean {
  if (EXPECTED.some((line) => text.includes(line))) return true;
  if (REFUSED.some((refusal) => text.includes(refusal))) {
    const id = /wdErrId = (\w+)/.exec(text)?.[1];
    if (id) refusedReferences.add(id);
    return true;
  }
  const reference = /^uncaught exception; .*internal error; reference = (\w+)$/m.exec(text)?.[1];
  return reference !== undefined && refusedReferences.has(reference);
}

type Write = typeof process.stderr.write;

function quiet(stream: NodeJS.WriteStream): void {
  const original: Write = stream.write.bind(stream);
  // A stack (workerd's native one, or a JavaScript one) may follow an expected report as a write of its own.
  let lastWasExpected = false;
  const filtered = ((chunk: unknown, ...rest: unknown[]) => {
    const text = typeof chunk === "string" ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk).toString() : "";
    const expected = isExpected(text);
    const trailingStack =
      lastWasExpected && ((text.startsWith("stack: ") && text.includes("workerd@")) || /^\s+at /.test(text));
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
