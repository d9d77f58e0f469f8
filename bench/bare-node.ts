/**
 * The hit-path baseline: a bare Node HTTP server that answers every request with the same
 * status, headers and body bytes herdless served for the key (captured by the harness).
 *
 *   node --import tsx bench/bare-node.ts '<Sample as JSON>'
 *
 * The bench runs it built to plain JavaScript (node-build.ts `builtBareNode`), not under tsx,
 * as herdless's CLI runs built.
 */
import { createServer, get } from "node:http";
import type { AddressInfo } from "node:net";

/** One response, as the bench captures it and replays it. */
export interface Sample {
  status: number;
  headers: Array<[string, string]>;
  bodyBase64: string;
}

/** Captures what `url` answers, for the bare servers to replay. */
export function captureSample(url: string, host: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const req = get(url, { headers: { host } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.once("error", reject);
      res.once("end", () => {
        // Framing headers are the server's business; the replay sets its own Content-Length.
        const headers: Array<[string, string]> = [];
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
          const name = res.rawHeaders[i] ?? "";
          if (!SKIPPED.has(name.toLowerCase())) headers.push([name, res.rawHeaders[i + 1] ?? ""]);
        }
        resolve({ status: res.statusCode ?? 0, headers, bodyBase64: Buffer.concat(chunks).toString("base64") });
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer from ${url} within 10 s`)));
    req.once("error", reject);
  });
}

const SKIPPED = new Set(["content-length", "transfer-encoding", "connection", "keep-alive", "date"]);

const arg = process.argv[2];
if (arg !== undefined && /bare-node\.(ts|mjs)$/.test(process.argv[1] ?? "")) {
  const sample = JSON.parse(arg) as Sample;
  const body = Buffer.from(sample.bodyBase64, "base64");
  // Flattened once, like herdless's own hit path: [name, value, name, value, …].
  const head: string[] = [];
  for (const [name, value] of sample.headers) head.push(name, value);
  head.push("content-length", String(body.length));
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(sample.status, head);
    res.end(body);
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, "127.0.0.1", () => {
    process.stderr.write(`bare node listening on http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
  });
  process.once("SIGTERM", () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
