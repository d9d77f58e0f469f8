/** The Worker's access log (`log.access`): a line per request on console.log, the Node server's fields. */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../../src/cloudflare/worker.ts";
import { EDGE, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

async function viaWorker(request: Parameters<typeof worker.fetch>[0], workerEnv: typeof env): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(request, workerEnv, ctx);
  await res.arrayBuffer();
  await waitOnExecutionContext(ctx);
  return res;
}

/** The access lines console.log received, parsed. */
function accessLines(spy: { mock: { calls: unknown[][] } }): Record<string, unknown>[] {
  return spy.mock.calls
    .map((call) => String(call[0]))
    .filter((text) => text.includes('"msg":"request"'))
    .map((text) => JSON.parse(text) as Record<string, unknown>);
}

afterEach(() => vi.restoreAllMocks());

describe("the Worker's access log", () => {
  it("writes one line per request with its status and Cache-Status: a miss, then a hit", async () => {
    const spy = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    const testEnv = edgeEnv(origin.url, { log: { access: true } });
    const headers = { "cf-connecting-ip": "192.0.2.7" };
    expect((await viaWorker(new Request(`${EDGE}/logged?a=1`, { headers }), testEnv)).status).toBe(200);
    expect((await viaWorker(new Request(`${EDGE}/logged?a=1`, { headers }), testEnv)).status).toBe(200);
    const lines = accessLines(spy);
    expect(lines).toMatchObject([
      {
        msg: "request",
        method: "GET",
        target: `${EDGE}/logged?a=1`,
        status: 200,
        cacheStatus: expect.stringMatching(/^herdless; fwd=uri-miss; fwd-status=200; ttl=\d+; stored$/),
        client: "192.0.2.7",
        complete: true,
      },
      { method: "GET", status: 200, cacheStatus: expect.stringMatching(/^herdless; hit; ttl=\d+$/) },
    ]);
    expect(await origin.count()).toBe(1);
  });

  it("is off by default: no line", async () => {
    const spy = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const origin = await testOrigin({ headers: { "cache-control": "max-age=60" } });
    expect((await viaWorker(new Request(`${EDGE}/quiet`), edgeEnv(origin.url))).status).toBe(200);
    expect(accessLines(spy)).toEqual([]);
  });
});
