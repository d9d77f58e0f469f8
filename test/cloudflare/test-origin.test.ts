import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/cloudflare/worker.ts";
import { testOrigin } from "./test-origin.ts";

async function viaWorker(originUrl: string, path: string): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`https://edge.test${path}`), { ...env, ORIGIN_URL: originUrl }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

describe("counting test origin", () => {
  it("counts exactly the requests the Worker sends", async () => {
    const origin = await testOrigin();
    expect(await (await viaWorker(origin.url, "/a?x=1")).text()).toBe("/a?x=1 #1");
    await (await viaWorker(origin.url, "/b")).text();
    expect(await origin.count()).toBe(2);
    expect(await origin.count("/a?x=1")).toBe(1);
    const stats = await origin.stats();
    expect(stats.requests.map((r) => r.path)).toEqual(["/a?x=1", "/b"]);
    expect(stats.inFlight).toBe(0);
  });

  it("switches status and headers mid-test, per path too", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=5" } });
    expect((await viaWorker(origin.url, "/p")).headers.get("cache-control")).toBe("max-age=5");
    await origin.set({ status: 503, body: "down for maintenance", paths: { "/ok": { status: 200 } } });
    const failed = await viaWorker(origin.url, "/p");
    expect(failed.status).toBe(503);
    expect(await failed.text()).toBe("down for maintenance");
    expect((await viaWorker(origin.url, "/ok")).status).toBe(200);
  });

  it("goes down (connection reset) and comes back", async () => {
    const origin = await testOrigin({ mode: "down" });
    expect((await viaWorker(origin.url, "/x")).status).toBe(502);
    await origin.set({ mode: "up" });
    expect((await viaWorker(origin.url, "/x")).status).toBe(200);
    expect(await origin.count()).toBe(2);
  });

  it("holds requests until released, so a test sees them in flight", async () => {
    const origin = await testOrigin({ mode: "hold" });
    const pending = Promise.all([viaWorker(origin.url, "/slow"), viaWorker(origin.url, "/slow")]);
    const parked = await origin.waitFor({ held: 2 });
    expect(parked.inFlight).toBe(2);
    expect(await origin.release(1)).toBe(1);
    expect(await origin.release()).toBe(1);
    const answers = await pending;
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    await Promise.all(answers.map((r) => r.text()));
    expect((await origin.stats()).maxInFlight).toBe(2);
  });

  it("answers 304 to a matching If-None-Match", async () => {
    const origin = await testOrigin({ etag: '"v1"' });
    const res = await fetch(`${origin.url}/e`, { headers: { "if-none-match": '"v1"' } });
    expect(res.status).toBe(304);
    expect((await origin.stats()).requests[0]?.headers["if-none-match"]).toBe('"v1"');
  });

  it("truncates a body, which fails the reader", async () => {
    const origin = await testOrigin({ mode: "truncate" });
    const res = await fetch(`${origin.url}/t`);
    await expect(res.arrayBuffer()).rejects.toThrow();
  });

  it("counts a client that gives up as aborted", async () => {
    const origin = await testOrigin({ mode: "hold" });
    const abort = new AbortController();
    const pending = fetch(`${origin.url}/gone`, { signal: abort.signal }).catch((e: unknown) => e);
    await origin.waitFor({ held: 1 });
    abort.abort();
    await pending;
    // The reset reaches Node a moment after the fetch rejects inside workerd.
    await expect.poll(async () => (await origin.stats()).aborted).toBe(1);
    const stats = await origin.stats();
    expect(stats).toMatchObject({ count: 1, inFlight: 0, held: 0 });
  });

  it("serves env.ORIGIN_URL from the shared namespace", async () => {
    expect(env.ORIGIN_URL).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/o\/shared$/);
    const res = await viaWorker(env.ORIGIN_URL, "/shared-probe");
    expect(res.status).toBe(200);
    await res.text();
  });
});
