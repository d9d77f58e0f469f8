import { describe, expect, it } from "vitest";
import { parseConfig, routeFor } from "../config.ts";
import {
  conditionalHeaders,
  entryFromResponse,
  notModifiedSelects,
  purgeTags,
  refreshedEntry,
  varyPointer,
  revalidatedHeaders,
} from "./response-entry.ts";
import { headerList } from "./http.ts";

const config = parseConfig({ origin: { url: "http://127.0.0.1:1" } });
const context = (token: number, requestHeaders: [string, string][] = []) => ({
  primary: "GET https://a.test/p",
  url: "https://a.test/p",
  requestHeaders: headerList(requestHeaders),
  route: routeFor(config, "/p"),
  config,
  token,
});
const body = new TextEncoder().encode("hello");

describe("entries from origin responses", () => {
  it("keeps validators, tags and the Vary-selected key", () => {
    const entry = entryFromResponse(
      {
        status: 200,
        headers: [
          ["cache-control", "max-age=60"],
          ["etag", '"v1"'],
          ["vary", "Accept-Language"],
          ["cache-tag", "a, b"],
          ["surrogate-key", "c d"],
          ["age", "3"],
        ],
        body,
        requestAt: 0,
        responseAt: 0,
      },
      context(4, [["accept-language", "fr"]]),
    );
    expect(entry).toMatchObject({
      key: 'GET https://a.test/p\n[["accept-language","fr"]]',
      etag: '"v1"',
      vary: ["accept-language"],
      tags: ["a", "b", "c", "d"],
      token: 4,
      staleAt: 57_000,
      initialAgeMs: 3_000,
    });
    // Age is recomputed on the way out, never replayed.
    expect(entry.headers.some(([n]) => n === "age")).toBe(false);
  });

  it("RFC 9111 §4.3.4: a 304 refreshes headers and freshness and keeps the body", () => {
    const stored = entryFromResponse(
      {
        status: 200,
        headers: [
          ["cache-control", "max-age=10"],
          ["etag", '"v1"'],
          ["content-type", "text/plain"],
          ["x-old", "1"],
        ],
        body,
        requestAt: 0,
        responseAt: 0,
      },
      context(1),
    );
    const refreshed = refreshedEntry(
      stored,
      {
        status: 304,
        headers: [
          ["cache-control", "max-age=100"],
          ["etag", '"v1"'],
          ["content-type", "text/html"],
          ["x-new", "2"],
        ],
        requestAt: 50_000,
        responseAt: 50_000,
      },
      context(2),
    );
    expect(refreshed.body).toBe(stored.body);
    expect(refreshed.status).toBe(200);
    expect(refreshed.staleAt).toBe(150_000);
    expect(refreshed.token).toBe(2);
    const headers = Object.fromEntries(refreshed.headers);
    expect(headers).toMatchObject({
      "cache-control": "max-age=100",
      "x-old": "1",
      "x-new": "2",
      "content-type": "text/plain",
    });
  });

  it("a 304 to the request an unconfirmed error answered keeps it unconfirmed: an attacker's revalidation never makes its 500 everyone's", () => {
    const base = {
      headers: [
        ["cache-control", "max-age=10"],
        ["etag", '"e"'],
      ] as [string, string][],
      body,
    };
    const stored = {
      ...entryFromResponse({ ...base, status: 500, requestAt: 0, responseAt: 0 }, context(1)),
      askedBy: "ab",
    };
    const refreshed = refreshedEntry(
      stored,
      { status: 304, headers: base.headers, requestAt: 20_000, responseAt: 20_000 },
      context(2),
    );
    expect([refreshed.status, refreshed.askedBy]).toEqual([500, "ab"]);
  });

  it("the Vary pointer an unconfirmed error writes stands for every variant: it carries no mark, and the URL's copies still count as copies", () => {
    const headers: [string, string][] = [
      ["cache-control", "max-age=10"],
      ["vary", "accept-language"],
    ];
    const variant = {
      ...entryFromResponse({ status: 500, headers, body, requestAt: 0, responseAt: 0 }, context(1)),
      askedBy: "ab",
    };
    expect(varyPointer(variant, "GET https://a.test/").askedBy).toBeUndefined();
  });

  it("asks conditionally only with validators of a real entry", () => {
    const stored = entryFromResponse(
      {
        status: 200,
        headers: [
          ["etag", '"v1"'],
          ["last-modified", "Tue, 01 Jan 2030 00:00:00 GMT"],
        ],
        body,
        requestAt: 0,
        responseAt: 0,
      },
      context(1),
    );
    expect(conditionalHeaders(stored)).toEqual([
      ["if-none-match", '"v1"'],
      ["if-modified-since", "Tue, 01 Jan 2030 00:00:00 GMT"],
    ]);
    expect(conditionalHeaders({ ...stored, negative: true })).toEqual([]);
    expect(conditionalHeaders(undefined)).toEqual([]);
  });

  it("reads purge tags from Cache-Tag and Surrogate-Key", () => {
    expect(
      purgeTags(
        headerList([
          ["cache-tag", " x ,y,,"],
          ["surrogate-key", "  z  x "],
        ]),
      ),
    ).toEqual(["x", "y", "z"]);
  });
});

describe("RFC 9111 §4.3.4: which stored response a 304 updates", () => {
  const stored = (headers: [string, string][]) =>
    entryFromResponse({ status: 200, headers, body, requestAt: 0, responseAt: 0 }, context(1));
  const lm = "Tue, 01 Dec 2026 10:00:00 GMT";
  it("its entity-tag must be the stored one (weak comparison), else its Last-Modified must be", () => {
    const tagged = stored([["etag", '"v1"']]);
    expect(notModifiedSelects(tagged, [["etag", '"v1"']])).toBe(true);
    expect(notModifiedSelects(tagged, [["etag", 'W/"v1"']])).toBe(true);
    expect(notModifiedSelects(tagged, [["etag", '"v2"']])).toBe(false);
    // nginx weakens the tag of the body it gzips, not the 304's: the same representation.
    expect(notModifiedSelects(stored([["etag", 'W/"v1"']]), [["etag", '"v1"']])).toBe(true);
    expect(notModifiedSelects(stored([["etag", 'W/"v1"']]), [["etag", 'W/"v2"']])).toBe(false);
    expect(notModifiedSelects(stored([["last-modified", lm]]), [["etag", '"v1"']])).toBe(false);
    expect(notModifiedSelects(tagged, [["etag", "v1"]])).toBe(false);
    const dated = stored([["last-modified", lm]]);
    expect(notModifiedSelects(dated, [["last-modified", lm]])).toBe(true);
    expect(notModifiedSelects(dated, [["last-modified", "Tue, 01 Dec 2026 10:00:01 GMT"]])).toBe(false);
    expect(notModifiedSelects(tagged, [["last-modified", lm]])).toBe(false);
  });

  it("a 304 without validators vouches for the copy it was asked about", () => {
    expect(notModifiedSelects(stored([["etag", '"v1"']]), [["cache-control", "max-age=60"]])).toBe(true);
  });

  it("a stored weak tag stays weak when the 304 names it strong: the stored bytes are not the origin's", () => {
    const weak = stored([["etag", 'W/"v1"']]);
    expect(headerList(revalidatedHeaders(weak, [["etag", '"v1"']])).get("etag")).toBe('W/"v1"');
    expect(headerList(revalidatedHeaders(weak, [["etag", 'W/"v2"']])).get("etag")).toBe('W/"v2"');
    expect(headerList(revalidatedHeaders(stored([["etag", '"v1"']]), [["etag", '"v1"']])).get("etag")).toBe('"v1"');
  });
});
