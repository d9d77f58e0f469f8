// An existing node:http server that puts herdless in front of /blog/* and keeps every
// other path its own. Run: ORIGIN_URL=http://127.0.0.1:8080 PORT=3000 npm start
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { createHandler } from "herdless/node";

/**
 * Starts the server on `port` (0 picks a free one) and resolves with its URL and a close().
 * @param {{ originUrl: string, port?: number }} options
 */
export async function start({ originUrl, port = 3000 }) {
  // /blog/* is answered by herdless: cached, coalesced, and the origin's load capped.
  const blog = createHandler({ config: { origin: { url: originUrl, maxConcurrency: 4 } } });
  const server = createServer((req, res) => {
    if (req.url?.startsWith("/blog/")) return blog(req, res);
    res.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
    res.end(`this server's own answer for ${req.url}\n`);
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(undefined)));
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : port}`;
  return {
    url,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(() => resolve(undefined)));
      await blog.close();
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const running = await start({
    originUrl: process.env.ORIGIN_URL ?? "http://127.0.0.1:8080",
    port: Number(process.env.PORT ?? 3000),
  });
  // Before the line: whoever reads it may signal at once, and a signal with no listener kills.
  for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => void running.close());
  console.log(`listening on ${running.url}: /blog/* through herdless, the rest is this server's own`);
}
