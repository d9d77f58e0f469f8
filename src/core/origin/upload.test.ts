import { describe, expect, it } from "vitest";
import { readUpload, UPLOAD_BUDGET_BYTES, UPLOAD_BUFFER_BYTES } from "./upload.ts";

/** A client's body that sends `bytes` and then nothing more (a stalled upload), or ends. */
function body(bytes: number, ends: boolean): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (bytes > 0) controller.enqueue(new Uint8Array(bytes));
      if (ends) controller.close();
    },
  });
}

describe("readUpload", () => {
  it("reads a small body whole, and streams a larger one whose end is still pending", async () => {
    const small = await readUpload(body(100, true));
    expect(small.kind === "whole" && small.body?.byteLength).toBe(100);
    const large = await readUpload(body(UPLOAD_BUFFER_BYTES + 1, false));
    expect(large.kind === "streamed" && large.pending()).toBe(true);
    small.release();
    large.release();
  });

  it("holds at most UPLOAD_BUDGET_BYTES across uploads being read: past it, an upload streams at once; released, reads whole again", async () => {
    // As many stalled small uploads as the budget allows: each waits for bytes that have not come.
    const clients: ReadableStreamDefaultController<Uint8Array>[] = [];
    const stalled = Array.from({ length: UPLOAD_BUDGET_BYTES / UPLOAD_BUFFER_BYTES }, () =>
      readUpload(new ReadableStream<Uint8Array>({ start: (controller) => void clients.push(controller) })),
    );
    const next = await readUpload(body(10, true));
    expect(next.kind).toBe("streamed");
    // Their clients finish, their calls end: the budget is back.
    for (const client of clients) client.close();
    for (const upload of await Promise.all(stalled)) upload.release();
    const after = await readUpload(body(10, true));
    expect(after.kind).toBe("whole");
    after.release();
  });
});
