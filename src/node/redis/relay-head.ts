import type { HerdlessErrorCode } from "../../core/errors.ts";
import { isEventStream } from "../../core/origin/response-fields.ts";
import type { RelayedAnswer, RelayedStream } from "../../core/fill/relay.ts";

/*
 * The head entry (`0-1`) of a relayed answer's record (relay.ts): what a follower needs
 * before the body, as JSON, versioned so that members of a rolling deploy skip another's;
 * and what an answer's head says about how it is offered.
 */

const HEAD_FORMAT = 1;

export type Head =
  | {
      v: typeof HEAD_FORMAT;
      kind: "stream";
      head: string;
      bytes?: number;
      size: RelayedStream["size"];
      fwdStatus: number;
    }
  | {
      v: typeof HEAD_FORMAT;
      kind: "failed";
      code: HerdlessErrorCode;
      message: string;
      fwdStatus?: number;
      retryAfterMs?: number;
      /** The failure is unconfirmed, that request's alone (FillResult `askedBy`); absent for a member that did not know it. */
      askedBy?: string;
      status: number;
      headers: [string, string][];
    };

/** The head entry of `answer`, as written to its record. */
export function headOf(answer: RelayedAnswer): string {
  const head: Head =
    answer.kind === "stream"
      ? {
          v: HEAD_FORMAT,
          kind: "stream",
          head: JSON.stringify(answer.head),
          ...(answer.bytes !== undefined ? { bytes: answer.bytes } : {}),
          size: answer.size,
          fwdStatus: answer.fwdStatus,
        }
      : {
          v: HEAD_FORMAT,
          kind: "failed",
          code: answer.code,
          message: answer.message,
          ...(answer.fwdStatus !== undefined ? { fwdStatus: answer.fwdStatus } : {}),
          ...(answer.retryAfterMs !== undefined ? { retryAfterMs: answer.retryAfterMs } : {}),
          ...(answer.askedBy !== undefined ? { askedBy: answer.askedBy } : {}),
          status: answer.response.status,
          headers: answer.response.headers,
        };
  return JSON.stringify(head);
}

/** The head entry, or undefined when missing or of another format (a rolling deploy: the waiter asks again). */
export function parseHead(raw: unknown): Head | undefined {
  if (typeof raw !== "string") return undefined;
  try {
    const head = JSON.parse(raw) as Partial<Head>;
    return head.v === HEAD_FORMAT && (head.kind === "stream" || head.kind === "failed") ? (head as Head) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a streamed answer is a server-sent event stream (response-fields.ts isEventStream). */
export function liveFeed(answer: RelayedStream): boolean {
  const type = answer.head.headers.find(([name]) => name === "content-type");
  return isEventStream(type?.[1] ?? null);
}

/**
 * An error answer for everyone (no `askedBy`: another request's confirmed it), copied even
 * when no process waits yet: the callers that came to confirm another request's error ask
 * at once, and the flight answering first finds the others still subscribing. Told `failed:`
 * without it, they had only herdless's 502 to give (a CI run saw it). Rare: only a flight
 * asked again by callers that waited on an unconfirmed error makes one, and expires with `ttlMs`.
 */
export const confirmedError = (answer: RelayedAnswer): boolean =>
  answer.kind === "failed" && answer.askedBy === undefined;
