/**
 * Reading the final answer out of what workerd's fetch gives for an interim response (the
 * rest of the connection, unparsed): each framing, a further interim answer, and what is
 * refused (left to fetchOrigin's clean 502).
 */
import { describe, expect, it } from "vitest";
import { finalAfterInterim } from "../../src/cloudflare/interim-fetch.ts";

/** The raw bytes, arriving in pieces of `step` bytes (a head split across reads included). */
function raw(parts: (string | Uint8Array)[], step = 7): ReadableStream<Uint8Array> {
  const bytes = parts.map((p) => (typeof p === "string" ? Uint8Array.from(p, (c) => c.charCodeAt(0)) : p));
  const all = new Uint8Array(bytes.reduce((n, b) => n + b.byteLength, 0));
  let at = 0;
  for (const b of bytes) all.set(b, (at += b.byteLength) - b.byteLength);
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= all.byteLength) return controller.close();
      controller.enqueue(all.slice(sent, (sent += step)));
    },
  });
}

async function gzip(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

describe("the final answer behind an interim one, read back from workerd's fetch body", () => {
  it("Content-Length framing: the declared bytes, nothing of what follows on the connection", async () => {
    const res = await finalAfterInterim(
      raw(["HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 junk"]),
      "GET",
    );
    expect([res?.status, res?.headers.get("cache-control"), await res?.text()]).toEqual([200, "max-age=60", "hello"]);
  });

  it("chunked framing (with an extension and a trailer), after a further 103", async () => {
    const res = await finalAfterInterim(
      raw([
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n",
        "4;ext=1\r\nnot \r\n5\r\nfound\r\n0\r\nX-Trailer: 1\r\n\r\n",
      ]),
      "GET",
    );
    expect([res?.status, res?.headers.get("link"), res?.headers.get("content-length"), await res?.text()]).toEqual([
      404,
      null,
      null,
      "not found",
    ]);
  });

  it("no framing: the body runs to the end of the connection; a HEAD's answer has none", async () => {
    const res = await finalAfterInterim(raw(["HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nto the end"]), "GET");
    expect(await res?.text()).toBe("to the end");
    const head = await finalAfterInterim(raw(["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"]), "HEAD");
    expect([head?.status, head?.headers.get("content-length"), head?.body]).toEqual([200, "10", null]);
  });

  it("a gzip body is decoded, as workerd's fetch would have (the label stays, as workerd leaves it)", async () => {
    const body = await gzip("compressed page");
    const res = await finalAfterInterim(
      raw([`HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ${body.byteLength}\r\n\r\n`, body]),
      "GET",
    );
    expect([res?.headers.get("content-encoding"), await res?.text()]).toEqual(["gzip", "compressed page"]);
  });

  it("what it cannot read as workerd would is refused: a br body, a malformed head, a body cut short", async () => {
    expect(await finalAfterInterim(raw(["HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\nxx"]), "GET")).toBeUndefined();
    expect(await finalAfterInterim(raw(["not http\r\n\r\n"]), "GET")).toBeUndefined();
    expect(await finalAfterInterim(raw(["HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"]), "GET")).toBeUndefined();
    expect(await finalAfterInterim(raw(["HTTP/1.1 200 OK\r\n"]), "GET")).toBeUndefined();
    const short = await finalAfterInterim(raw(["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]), "GET");
    await expect(short!.text()).rejects.toThrow(/short/);
  });

  it("a head workerd would refuse is refused whole, never read with a field dropped: whitespace before the colon, a name that is not a token, a folded line, disagreeing Content-Lengths", async () => {
    for (const head of [
      "Cache-Control : private\r\nContent-Length: 2",
      "Vary\t: X-Lang\r\nContent-Length: 2",
      "X Bad: 1\r\nContent-Length: 2",
      "Cache-Control: max-age=60,\r\n private\r\nContent-Length: 2",
      "Content-Length: 2\r\nContent-Length: 3",
      "Content-Length: 2, 3",
      "Transfer-Encoding: gzip\r\nContent-Length: 2",
      "Transfer-Encoding: chunked, gzip",
      // RFC 9112 §6.1: both framings at once is a smuggling shape; Node's parser refuses it too.
      "Transfer-Encoding: chunked\r\nContent-Length: 99",
    ])
      expect(await finalAfterInterim(raw([`HTTP/1.1 200 OK\r\n${head}\r\n\r\nokk`]), "GET"), head).toBeUndefined();
    // Repeated equal lengths are one length (RFC 9112 §6.3).
    const same = await finalAfterInterim(
      raw(["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nokk"]),
      "GET",
    );
    expect(await same?.text()).toBe("ok");
  });

  it("a chunk size that is not 1*HEXDIG (what parseInt lets by: `5x`, `+5`, ` 0x5`) fails the body, never read as a size", async () => {
    for (const size of ["5x", "+5", "0x5", "-5", ""]) {
      const res = await finalAfterInterim(
        raw([`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${size}\r\nhello\r\n0\r\n\r\n`]),
        "GET",
      );
      await expect(res!.text(), size).rejects.toThrow(/malformed chunk size/);
    }
  });

  it("a chunk is handed on as its bytes arrive, never held until whole: the first 64 KiB of a declared 16 MiB chunk reach the reader before the connection fails", async () => {
    const arrived = new Uint8Array(64 * 1024).fill(97);
    let pulls = 0;
    const connection = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulls++;
        if (pulls === 1)
          controller.enqueue(
            Uint8Array.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000\r\n", (c) => c.charCodeAt(0)),
          );
        else if (pulls === 2) controller.enqueue(arrived);
        else controller.error(new Error("connection reset"));
      },
    });
    const res = await finalAfterInterim(connection, "GET");
    const reader = res!.body!.getReader();
    const first = await reader.read();
    expect(first.value?.byteLength).toBe(arrived.byteLength);
    await expect(reader.read()).rejects.toThrow(/connection reset/);
  });

  it("chunks read in pieces still end where their sizes say: a chunk's data split across reads, then the next chunk", async () => {
    const res = await finalAfterInterim(
      raw(
        [
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\n123\r\n0\r\n\r\n",
        ],
        5,
      ),
      "GET",
    );
    expect(await res?.text()).toBe("abcdefghijklmnopqrstuvwxyz123");
  });
});
