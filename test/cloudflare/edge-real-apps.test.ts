/**
 * A real site behind the Worker: what an application's pages need to reach their visitors as
 * the origin sent them. The Node twin is test/node/real-apps.test.ts.
 */
import { describe, expect, it } from "vitest";
import { dataCenters, edgeEnv } from "./edge-harness.ts";
import { testOrigin } from "./test-origin.ts";

const decoder = new TextDecoder();

describe("server-sent events on a cached route (no bypass)", () => {
  it("reach the client as the origin writes them, not after origin.timeoutMs as a 504", async () => {
    const origin = await testOrigin({
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
      body: "data: one\n\ndata: two\n\n",
      mode: "stream",
    });
    const [dc] = dataCenters(1, edgeEnv(origin.url, { origin: { timeoutMs: 3000 } }));
    const { response } = await dc!.fetch("/events", { headers: { accept: "text/event-stream" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(decoder.decode(first.value)).toBe("data: one\n\n");
    // The origin is still writing the stream: the first event went out before its end.
    expect((await origin.stats()).held).toBe(1);
    await origin.release();
    let rest = "";
    for (let read = await reader.read(); !read.done; read = await reader.read()) rest += decoder.decode(read.value);
    expect(rest).toBe("data: two\n\n");
    expect(await origin.count()).toBe(1);
  });
});
