import { describe, expect, it } from "vitest";
import { dataCenters, edgeEnv, type DataCenter } from "./edge-harness.ts";
import type { OriginRequestRecord } from "./origin-protocol.ts";
import { testOrigin, type TestOrigin } from "./test-origin.ts";

/**
 * An origin body cut off mid-way, as each client of the Worker receives it. The framing on
 * the client's connection is workerd's: a stream whose length it does not know goes chunked
 * (the Content-Length given with it dropped), and one that errors still ends with the last
 * chunk (workerd#6818). A cut-off page reached the filler and every waiter as a complete
 * `200 public, max-age=60`, which a browser or a shared cache in front would keep.
 *
 * What the client's connection carries is seen here by sending the answer's body on as
 * workerd sends any stream, as the body of a request to a sink that notes what arrived: the
 * framing workerd gives it (Content-Length for a stream of known length, else chunked) and
 * whether the message ended whole.
 */

const BYTES = 10_000;
/** The origin's mode `cut` sends half, then waits; a pause herdless streams from (20 ms). */
const SENT = BYTES / 2;

/** `body` sent on by workerd to `sink`; settles once the send failed or the sink answered. */
function sendOn(sink: TestOrigin, body: ReadableStream<Uint8Array> | null): Promise<string> {
  return fetch(`${sink.url}/client`, { method: "POST", body }).then(
    (res) => `answered ${res.status}`,
    () => "failed",
  );
}

/** What the sink saw of each body: its framing and what arrived. */
function seenBy(requests: OriginRequestRecord[]) {
  return requests.map(({ headers, received }) => ({
    length: headers["content-length"],
    chunked: headers["transfer-encoding"] === "chunked",
    received,
  }));
}

async function cutOrigin(headers: Record<string, string>): Promise<TestOrigin> {
  return testOrigin({ bodyBytes: BYTES, mode: "cut", headers });
}

describe("an origin body cut off mid-way reaches no client of the Worker as a complete answer", () => {
  it("Content-Length, shared by a filler, its isolate's waiter and another data center's: each is sent that length and fewer bytes, never a whole message", async () => {
    const origin = await cutOrigin({ "content-type": "text/html", "cache-control": "public, max-age=60" });
    const sink = await testOrigin({ mode: "sink" });
    const [near, far] = dataCenters(2, edgeEnv(origin.url), undefined, { ownIsolate: true }) as [
      DataCenter,
      DataCenter,
    ];
    const path = `/cut-${crypto.randomUUID().slice(0, 8)}`;
    const answers = await Promise.all([near.fetch(path), near.fetch(path), far.fetch(path)]);
    expect(await origin.count()).toBe(1);
    const heads = answers.map(({ response }) => [
      response.status,
      response.headers.get("content-length"),
      // RFC 9211 §2.5: the head goes out before the body is whole, let alone stored.
      /stored/.test(response.headers.get("cache-status") ?? ""),
    ]);
    expect(heads).toEqual(Array.from({ length: 3 }, () => [200, String(BYTES), false]));
    // Whichever came first filled; the other two joined its fetch.
    const collapsed = answers.filter(({ response }) => /collapsed/.test(response.headers.get("cache-status") ?? ""));
    expect(collapsed).toHaveLength(2);
    const sent = answers.map(({ response }) => sendOn(sink, response.body));
    await expect
      .poll(async () => (await sink.stats()).requests.map((r) => r.received?.bytes), { timeout: 5_000 })
      .toEqual([SENT, SENT, SENT]);
    await origin.release();
    expect(await Promise.all(sent)).toEqual(["failed", "failed", "failed"]);
    expect(seenBy((await sink.stats()).requests)).toEqual(
      Array.from({ length: 3 }, () => ({
        length: String(BYTES),
        chunked: false,
        received: { bytes: SENT, complete: false },
      })),
    );
  });

  it("Content-Length, relayed to one client (an answer the cache may not share): sent that length and fewer bytes", async () => {
    const origin = await cutOrigin({ "content-type": "text/html", "cache-control": "private, max-age=60" });
    const sink = await testOrigin({ mode: "sink" });
    const [dc] = dataCenters(1, edgeEnv(origin.url), undefined, { ownIsolate: true }) as [DataCenter];
    const { response } = await dc.fetch(`/private-${crypto.randomUUID().slice(0, 8)}`);
    expect([response.status, response.headers.get("content-length")]).toEqual([200, String(BYTES)]);
    const sent = sendOn(sink, response.body);
    await expect
      .poll(async () => (await sink.stats()).requests.map((r) => r.received?.bytes), { timeout: 5_000 })
      .toEqual([SENT]);
    await origin.release();
    expect(await sent).toBe("failed");
    expect(seenBy((await sink.stats()).requests)).toEqual([
      { length: String(BYTES), chunked: false, received: { bytes: SENT, complete: false } },
    ]);
  });

  it("a whole body, read by a client: the same length, every byte, one whole message", async () => {
    const origin = await testOrigin({ bodyBytes: BYTES, mode: "half" });
    const sink = await testOrigin({ mode: "sink" });
    const [dc] = dataCenters(1, edgeEnv(origin.url), undefined, { ownIsolate: true }) as [DataCenter];
    const { response } = await dc.fetch(`/whole-${crypto.randomUUID().slice(0, 8)}`);
    const sent = sendOn(sink, response.body);
    await origin.release();
    expect(await sent).toBe("answered 200");
    expect(seenBy((await sink.stats()).requests)).toEqual([
      { length: String(BYTES), chunked: false, received: { bytes: BYTES, complete: true } },
    ]);
  });
});
