import { createServer } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * An origin whose connections the test controls, counted where they arrive: in `refuse`
 * mode every connection is reset the moment it is accepted (before a byte is read), as a
 * crashed backend behind a live port does, so a test can count the connection attempts
 * herdless makes while the origin is unreachable (a closed port would refuse them unseen).
 * In `up` mode it answers `<path> v<version>` with `cacheControl`; `/broken…` answers 500.
 *
 * @example
 * const origin = await startGatedOrigin("max-age=10, stale-if-error=600");
 * origin.set("refuse"); // … origin.connections() counts every attempt
 */
export interface GatedOrigin {
  readonly url: string;
  set(mode: "up" | "refuse"): void;
  /** TCP connections accepted since start, in either mode. */
  connections(): number;
  /** Requests answered for `path` (every path when omitted) since start or {@link resetRequests}. */
  requests(path?: string): number;
  resetRequests(): void;
  /** A new version of every path: a refresh shows in the body. */
  bump(): void;
  close(): Promise<void>;
}

export async function startGatedOrigin(cacheControl: string): Promise<GatedOrigin> {
  let mode: "up" | "refuse" = "up";
  let connections = 0;
  let version = 1;
  let byPath = new Map<string, number>();
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    byPath.set(path, (byPath.get(path) ?? 0) + 1);
    req.resume();
    if (path.startsWith("/broken")) {
      res.writeHead(500, { "content-type": "text/plain" }).end("application bug");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain", "cache-control": cacheControl });
    res.end(`${req.method} ${path} v${version}`);
  });
  server.on("connection", (socket: Socket) => {
    connections++;
    if (mode === "refuse") {
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    set(next) {
      mode = next;
      // Pooled keep-alive connections would otherwise still reach the origin.
      if (next === "refuse") for (const socket of sockets) socket.resetAndDestroy();
    },
    connections: () => connections,
    requests: (path) =>
      path === undefined ? [...byPath.values()].reduce((a, b) => a + b, 0) : (byPath.get(path) ?? 0),
    resetRequests: () => void (byPath = new Map()),
    bump: () => void version++,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
