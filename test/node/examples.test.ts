import { afterEach, describe, expect, it } from "vitest";
import { startFragileOrigin, type FragileOrigin } from "../../fixtures/fragile-origin.ts";
// The example as a user runs it; "herdless/node" resolves to src/node (vitest.config.ts).
import { start } from "../../examples/embed-node/server.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function origin(): Promise<FragileOrigin> {
  const started = await startFragileOrigin({ cacheControl: "max-age=60" });
  cleanups.push(() => started.close());
  return started;
}

describe("examples/embed-node: herdless on /blog/* of an existing node:http server", () => {
  it("caches /blog/* in front of the origin and leaves the other paths to the server", async () => {
    const upstream = await origin();
    const app = await start({ originUrl: upstream.url, port: 0 });
    cleanups.push(() => app.close());

    const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${app.url}/blog/post`)));
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
    await Promise.all(answers.map((r) => r.text()));
    expect(upstream.stats().byPath["/blog/post"]).toBe(1);

    const again = await fetch(`${app.url}/blog/post`);
    expect(again.headers.get("cache-status")).toMatch(/^herdless; hit/);

    const own = await fetch(`${app.url}/about`);
    expect(await own.text()).toBe("this server's own answer for /about\n");
    expect(own.headers.get("cache-status")).toBeNull();
    expect(upstream.stats().byPath["/about"]).toBeUndefined();
  });
});

describe("createHandler behind a framework that mounts it under a prefix", () => {
  it("keys and forwards the full path kept in req.originalUrl (Express's app.use('/blog', handler))", async () => {
    const upstream = await origin();
    const { createHandler } = await import("herdless/node");
    const { createServer } = await import("node:http");
    const blog = createHandler({ config: { origin: { url: upstream.url } } });
    // What Express does for app.use("/blog", blog): the prefix moves out of req.url.
    const server = createServer((req, res) => {
      Object.assign(req, { originalUrl: req.url });
      req.url = req.url!.slice("/blog".length);
      blog(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await blog.close();
    });
    const port = (server.address() as { port: number }).port;
    const answer = await fetch(`http://127.0.0.1:${port}/blog/post?id=1`);
    expect(answer.status).toBe(200);
    await answer.text();
    expect(upstream.stats().byPath).toEqual({ "/blog/post?id=1": 1 });
  });
});
