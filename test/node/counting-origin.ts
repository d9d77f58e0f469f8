import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * An origin that answers every request at once with a page fresh for a minute, counting its
 * requests; its close is pushed onto the test's `cleanup`.
 */
export async function countingOrigin(
  cleanup: (() => Promise<void> | void)[],
): Promise<{ url: string; asked: () => number }> {
  let asked = 0;
  const server = createServer((_req, res) => {
    asked++;
    res.writeHead(200, { "cache-control": "max-age=60" }).end("page");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => new Promise((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asked: () => asked };
}
