/**
 * A body whose every chunk is ready the moment it is asked for, as an origin on a fast local
 * socket is: the stream that showed a JavaScript pump holding the event loop (in workerd,
 * every other request of the isolate waited for its end). `sent()` says how many chunks it
 * has handed out so far, so a test can see what a timer saw.
 *
 * @example
 * const { body, sent } = alwaysReadyBody();
 */
export function alwaysReadyBody(
  chunks = 64,
  chunkBytes = 64 * 1024,
): {
  body: ReadableStream<Uint8Array>;
  sent: () => number;
  bytes: number;
} {
  let sent = 0;
  const body = new ReadableStream<Uint8Array>(
    {
      pull: (controller) => {
        if (sent === chunks) controller.close();
        else controller.enqueue(new Uint8Array(chunkBytes).fill(sent++));
      },
    },
    { highWaterMark: 0 },
  );
  return { body, sent: () => sent, bytes: chunks * chunkBytes };
}
