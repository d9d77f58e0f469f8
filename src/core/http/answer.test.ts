import { describe, expect, it } from "vitest";
import { testEntry } from "../store/store-conformance.ts";
import { answerFromEntry, answerFromPass } from "./answer.ts";
import { evaluatePreconditions, parseEntityTagList } from "./conditional.ts";
import type { Entry } from "./entry.ts";
import { invalidatedUrls } from "./invalidation.ts";
import type { EngineResponse } from "./respond.ts";
import { selectRange } from "./range.ts";
import { clientWantsRevalidation, needsFullAnswer, requestDirectives } from "./request-directives.ts";

const LAST_MODIFIED = "Tue, 01 Jan 2030 00:00:00 GMT";
const DATE = "Tue, 01 Jan 2030 00:10:00 GMT";
const BODY = "0123456789".repeat(100); // 1000 bytes

function stored(overrides: Partial<Entry> = {}): Entry {
  return testEntry("K", 0, {
    headers: [
      ["content-type", "text/plain"],
      ["etag", '"v1"'],
      ["last-modified", LAST_MODIFIED],
      ["date", DATE],
      ["cache-control", "max-age=10"],
      ["x-origin", "yes"],
    ],
    body: new TextEncoder().encode(BODY),
    lastModified: LAST_MODIFIED,
    ...overrides,
  });
}

const ask = (headers: Record<string, string>, method = "GET") => ({ method, headers: new Headers(headers) });

describe("RFC 9110 §13.1.2 If-None-Match against a stored response", () => {
  it.each([
    ['"v1"', "not-modified"],
    ['W/"v1"', "not-modified"], // weak comparison
    ['"v0", "v1"', "not-modified"],
    ['"v0",W/"v1"', "not-modified"],
    ["*", "not-modified"],
    ['"v2"', "proceed"],
    ['"v1', "proceed"], // malformed: ignored
  ])("%s → %s", (value, verdict) => {
    expect(evaluatePreconditions(stored(), new Headers({ "if-none-match": value }), "GET")).toBe(verdict);
  });

  it("a stored weak ETag matches its strong twin", () => {
    const weak = stored({ etag: 'W/"v1"' });
    expect(evaluatePreconditions(weak, new Headers({ "if-none-match": '"v1"' }), "HEAD")).toBe("not-modified");
  });

  it("a list entity-tag may contain a comma inside its quotes", () => {
    expect(parseEntityTagList('"a,b", W/"c"')).toEqual([
      { weak: false, opaque: '"a,b"' },
      { weak: true, opaque: '"c"' },
    ]);
  });

  it("§13.2.1: preconditions are not evaluated against a stored error", () => {
    expect(evaluatePreconditions(stored({ status: 404 }), new Headers({ "if-none-match": "*" }), "GET")).toBe(
      "proceed",
    );
  });
});

describe("RFC 9110 §13.1.3 / RFC 9111 §4.3.2 If-Modified-Since", () => {
  it.each([
    [LAST_MODIFIED, "not-modified"],
    ["Wed, 02 Jan 2030 00:00:00 GMT", "not-modified"],
    ["Mon, 31 Dec 2029 00:00:00 GMT", "proceed"],
    ["not a date", "proceed"],
  ])("%s → %s", (value, verdict) => {
    expect(evaluatePreconditions(stored(), new Headers({ "if-modified-since": value }), "GET")).toBe(verdict);
  });

  it("without Last-Modified, compares with the stored Date", () => {
    const noLm = stored({ lastModified: undefined, headers: [["date", DATE]] });
    expect(evaluatePreconditions(noLm, new Headers({ "if-modified-since": DATE }), "GET")).toBe("not-modified");
    expect(evaluatePreconditions(noLm, new Headers({ "if-modified-since": LAST_MODIFIED }), "GET")).toBe("proceed");
  });

  it("§13.2.2: If-None-Match takes precedence over If-Modified-Since", () => {
    const headers = new Headers({ "if-none-match": '"other"', "if-modified-since": "Wed, 02 Jan 2030 00:00:00 GMT" });
    expect(evaluatePreconditions(stored(), headers, "GET")).toBe("proceed");
  });
});

describe("RFC 9110 §13.1.1 / §13.1.4 If-Match and If-Unmodified-Since", () => {
  it.each([
    [{ "if-match": '"v1"' }, "proceed"],
    [{ "if-match": "*" }, "proceed"],
    [{ "if-match": '"v2"' }, "failed"],
    [{ "if-match": 'W/"v1"' }, "failed"], // strong comparison
    [{ "if-unmodified-since": "Mon, 31 Dec 2029 00:00:00 GMT" }, "failed"],
    [{ "if-unmodified-since": LAST_MODIFIED }, "proceed"],
    // §13.2.2: If-Unmodified-Since is not evaluated when If-Match is present.
    [{ "if-match": '"v1"', "if-unmodified-since": "Mon, 31 Dec 2029 00:00:00 GMT" }, "proceed"],
    // §13.2.2 step order: a failed If-Match wins over a matching If-None-Match.
    [{ "if-match": '"v2"', "if-none-match": '"v1"' }, "failed"],
  ])("%j → %s", (headers, verdict) => {
    expect(evaluatePreconditions(stored(), new Headers(headers), "GET")).toBe(verdict);
  });

  it("If-Unmodified-Since is ignored when nothing stored says when the response changed", () => {
    const noLm = stored({ lastModified: undefined });
    expect(evaluatePreconditions(noLm, new Headers({ "if-unmodified-since": LAST_MODIFIED }), "GET")).toBe("proceed");
  });
});

describe("RFC 9110 §14 Range from a stored full response", () => {
  const range = (value: string, extra: Record<string, string> = {}, entry = stored(), method = "GET") =>
    selectRange(entry, new Headers({ range: value, ...extra }), method, entry.body.byteLength);

  it.each([
    ["bytes=0-99", { start: 0, end: 99 }],
    ["bytes=-500", { start: 500, end: 999 }],
    ["bytes=100-", { start: 100, end: 999 }],
    ["bytes=990-2000", { start: 990, end: 999 }],
    ["bytes=-5000", { start: 0, end: 999 }],
    ["Bytes = 5-5", { start: 5, end: 5 }],
  ])("§14.1.2 %s", (value, expected) => {
    expect(range(value)).toEqual({ kind: "partial", length: 1000, ...expected });
  });

  it.each(["bytes=1000-", "bytes=5000-6000", "bytes=-0"])("§14.1.1 %s is unsatisfiable", (value) => {
    expect(range(value)).toEqual({ kind: "unsatisfiable", length: 1000 });
  });

  it.each(["bytes=5-1", "bytes=abc", "items=0-1", "bytes=0-1,5-6", "bytes="])("§14.2 %s → the full 200", (value) => {
    expect(range(value).kind).toBe("full");
  });

  it("§14.2: only GET, only a stored 200", () => {
    expect(range("bytes=0-1", {}, stored(), "HEAD").kind).toBe("full");
    expect(range("bytes=0-1", {}, stored({ status: 404 })).kind).toBe("full");
  });

  it.each([
    ['"v1"', "partial"],
    ['W/"v1"', "full"],
    ['"v2"', "full"],
    [LAST_MODIFIED, "partial"],
    ["Wed, 02 Jan 2030 00:00:00 GMT", "full"],
  ])("§13.1.5 If-Range %s → %s", (value, kind) => {
    expect(range("bytes=0-9", { "if-range": value }).kind).toBe(kind);
  });

  it("§13.1.5: a weak stored ETag never lets If-Range through", () => {
    expect(range("bytes=0-9", { "if-range": '"v1"' }, stored({ etag: 'W/"v1"' })).kind).toBe("full");
  });

  it("§13.1.5 / §8.8.2.2: a Last-Modified within a second of Date is weak: If-Range by date gives the full 200", () => {
    const weak = stored({ headers: [["date", LAST_MODIFIED]] });
    expect(range("bytes=0-9", { "if-range": LAST_MODIFIED }, weak).kind).toBe("full");
  });
});

describe("answers made from a stored entry", () => {
  it("RFC 9110 §15.4.5: a 304 carries the stored fields but the representation metadata, and no body", () => {
    const entry = stored();
    const described: [string, string][] = [
      ["content-encoding", "gzip"],
      ["content-language", "en"],
      ["content-digest", "sha-256=:AAAA:"],
      ["access-control-allow-origin", "*"],
    ];
    const res = answerFromEntry(
      { ...entry, headers: [...entry.headers, ...described] },
      { hit: true },
      ask({ "if-none-match": '"v1"' }),
      1_000,
    );
    expect(res.status).toBe(304);
    expect(res.body).toBeNull();
    const names = res.headers.map(([name]) => name).sort();
    expect(names).toEqual([
      "access-control-allow-origin",
      "age",
      "cache-control",
      "cache-status",
      "date",
      "etag",
      "last-modified",
      "x-origin",
    ]);
  });

  it("RFC 9110 §13.1.1: a failed If-Match is a 412", () => {
    expect(answerFromEntry(stored(), { hit: true }, ask({ "if-match": '"v9"' }), 0).status).toBe(412);
  });

  it("RFC 9110 §14.4 / §15.3.7: a 206 carries Content-Range and the slice", () => {
    const res = answerFromEntry(stored(), { hit: true }, ask({ range: "bytes=-3" }), 0);
    expect(res.status).toBe(206);
    expect(new TextDecoder().decode(res.body as Uint8Array)).toBe("789");
    expect(res.headers).toContainEqual(["content-range", "bytes 997-999/1000"]);
    expect(res.headers).toContainEqual(["content-length", "3"]);
    expect(res.headers).toContainEqual(["x-origin", "yes"]);
  });

  it("RFC 9110 §14.4: a stray Content-Range stored with a 200 never reaches a 206 beside ours", () => {
    const entry = stored();
    const withStray = { ...entry, headers: [...entry.headers, ["content-range", "bytes 0-1/2"] as [string, string]] };
    const res = answerFromEntry(withStray, { hit: true }, ask({ range: "bytes=0-3" }), 0);
    expect(res.headers.filter(([name]) => name === "content-range")).toEqual([["content-range", "bytes 0-3/1000"]]);
  });

  it("RFC 9110 §15.5.17: an unsatisfiable range is a 416 with Content-Range: bytes */length", () => {
    const res = answerFromEntry(stored(), { hit: true }, ask({ range: "bytes=2000-" }), 0);
    expect(res.status).toBe(416);
    expect(res.headers).toContainEqual(["content-range", "bytes */1000"]);
  });
});

describe("answers made from the origin's answer to a fill that could not be shared", () => {
  const relayed = (headers: [string, string][], body: EngineResponse["body"]): EngineResponse => ({
    status: 200,
    headers: [["content-type", "video/mp4"], ["etag", '"v1"'], ["cache-control", "no-store"], ...headers],
    body,
    cacheStatus: { fwd: "uri-miss", fwdStatus: 200, detail: "uncacheable" },
  });
  const bytes = new TextEncoder().encode(BODY);

  it("RFC 9110 §14: a Range is cut from the body in hand or as it arrives; a 416 lets the stream go", async () => {
    const inHand = answerFromPass(relayed([["content-length", "1000"]], bytes), ask({ range: "bytes=-3" }), 0);
    expect([inHand.status, new TextDecoder().decode(inHand.body as Uint8Array)]).toEqual([206, "789"]);
    const arriving = answerFromPass(
      relayed([["content-length", "1000"]], new Response(bytes).body),
      ask({ range: "bytes=10-12" }),
      0,
    );
    expect(arriving.headers).toContainEqual(["content-range", "bytes 10-12/1000"]);
    expect(await new Response(arriving.body as ReadableStream<Uint8Array>).text()).toBe("012");
    let cancelled = false;
    const stream = new ReadableStream<Uint8Array>({ cancel: () => void (cancelled = true) });
    expect(answerFromPass(relayed([["content-length", "1000"]], stream), ask({ range: "bytes=5000-" }), 0).status).toBe(
      416,
    );
    expect(cancelled).toBe(true);
  });

  it("answered whole: a length the client is not told, or a 200 that is itself a part (its own Content-Range)", () => {
    expect(answerFromPass(relayed([], new Response(bytes).body), ask({ range: "bytes=0-1" }), 0).status).toBe(200);
    const part = relayed(
      [
        ["content-length", "1000"],
        ["content-range", "bytes 0-999/5000"],
      ],
      bytes,
    );
    expect(answerFromPass(part, ask({ range: "bytes=0-1" }), 0).status).toBe(200);
  });

  it("RFC 9110 §13.2.2: preconditions come first; a 304 keeps the client's own Set-Cookie", () => {
    const full = relayed(
      [
        ["content-length", "1000"],
        ["set-cookie", "s=1"],
      ],
      bytes,
    );
    const same = answerFromPass(full, ask({ "if-none-match": '"v1"', range: "bytes=0-1" }), 0);
    expect([same.status, same.body]).toEqual([304, null]);
    expect(same.headers).toContainEqual(["set-cookie", "s=1"]);
    expect(answerFromPass(full, ask({ "if-match": '"v0"' }), 0).status).toBe(412);
  });
});

describe("RFC 9111 §5.2.1 request directives", () => {
  it.each([
    [{ "cache-control": "no-cache" }, { noCache: true, onlyIfCached: false, maxAgeMs: undefined }],
    [{ "cache-control": "max-age=0" }, { noCache: false, onlyIfCached: false, maxAgeMs: 0 }],
    [{ pragma: "no-cache" }, { noCache: true, onlyIfCached: false, maxAgeMs: undefined }],
    // RFC 9111 §5.4: Pragma is ignored when Cache-Control is present.
    [
      { pragma: "no-cache", "cache-control": "max-age=60" },
      { noCache: false, onlyIfCached: false, maxAgeMs: 60_000 },
    ],
    [{ "cache-control": "only-if-cached" }, { noCache: false, onlyIfCached: true, maxAgeMs: undefined }],
  ])("%j", (headers, expected) => {
    expect(requestDirectives(new Headers(headers))).toEqual(expected);
  });

  it("§5.2.1.1: max-age asks past entries older than it, on a route that honours it", () => {
    const entry = stored(); // stored at 0
    const maxAge5 = requestDirectives(new Headers({ "cache-control": "max-age=5" }));
    const honoured = { honorRequestNoCache: true };
    expect(clientWantsRevalidation(honoured, maxAge5, entry, 4_000)).toBe(false);
    expect(clientWantsRevalidation(honoured, maxAge5, entry, 6_000)).toBe(true);
    expect(clientWantsRevalidation({ honorRequestNoCache: false }, maxAge5, entry, 6_000)).toBe(false);
  });

  it("the fresh-hit paths leave preconditions, Range, and honoured directives to the engine", () => {
    expect(needsFullAnswer(new Headers({ accept: "*/*" }), true)).toBe(false);
    expect(needsFullAnswer(new Headers({ range: "bytes=0-1" }), false)).toBe(true);
    expect(needsFullAnswer(new Headers({ "cache-control": "no-cache" }), false)).toBe(false);
    expect(needsFullAnswer(new Headers({ "cache-control": "no-cache" }), true)).toBe(true);
  });
});

describe("RFC 9111 §4.4 invalidation targets", () => {
  const target = new URL("https://site.test/cart?x=1");
  it("the target, and same-origin Location / Content-Location", () => {
    const urls = invalidatedUrls("POST", target, 303, [
      ["location", "/cart/1"],
      ["content-location", "https://site.test/cart/summary"],
    ]);
    expect(urls.map((u) => u.href)).toEqual([
      "https://site.test/cart?x=1",
      "https://site.test/cart/1",
      "https://site.test/cart/summary",
    ]);
  });

  it("never another origin's URL, never after an error or a safe method", () => {
    expect(invalidatedUrls("PUT", target, 201, [["location", "https://other.test/x"]]).map((u) => u.href)).toEqual([
      target.href,
    ]);
    expect(invalidatedUrls("DELETE", target, 404, [])).toEqual([]);
    expect(invalidatedUrls("OPTIONS", target, 200, [])).toEqual([]);
    expect(invalidatedUrls("POST", target, 200, [["location", "http://[bad"]]).length).toBe(1);
  });
});
