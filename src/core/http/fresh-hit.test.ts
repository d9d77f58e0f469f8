import { describe, expect, it } from "vitest";
import { parseConfig, routeFor } from "../config.ts";
import { RefreshMarks } from "../fill/refresh-marks.ts";
import { testEntry } from "../store/store-conformance.ts";
import type { Entry } from "./entry.ts";
import { freshHit, memoryAnswer } from "./fresh-hit.ts";
import type { RequestFacts } from "./decision.ts";

const config = parseConfig({ origin: { url: "http://127.0.0.1:1" }, defaults: { refreshAhead: 0.1 } });
const route = routeFor(config, "/");
const get: RequestFacts = { method: "GET", hasAuthorization: false, hasCookie: false };
const noHeaders = { client: new Headers(), selecting: new Headers() };
// staleAt 10 s, swrUntil 20 s, sieUntil 30 s, deleteAt 60 s after 0: the last 1 s of freshness is refresh-ahead.
const entry = testEntry("K", 0);

function memory(...entries: Entry[]) {
  const held = new Map(entries.map((e) => [e.key, e]));
  return { getSync: (key: string) => held.get(key) };
}

function answer(stored: Entry, now: number, marks: RefreshMarks) {
  return memoryAnswer(memory(stored), route, "K", get, noHeaders, undefined, now, marks);
}

describe("memoryAnswer: what memory answers without the engine", () => {
  it("a fresh copy outside its refresh-ahead window: a plain hit, as freshHit", () => {
    expect(answer(entry, 5_000, new RefreshMarks(1_000))).toEqual({ entry });
    expect(freshHit(memory(entry), route, "K", get, noHeaders, undefined, 5_000)).toBe(entry);
  });

  it("in the refresh-ahead window or inside stale-while-revalidate: only once this edge's refresh runs (the engine starts it)", () => {
    const marks = new RefreshMarks(30_000);
    expect(answer(entry, 9_500, marks)).toBeUndefined();
    expect(answer(entry, 15_000, marks)).toBeUndefined();
    marks.begin("K", 9_500, entry.staleAt);
    expect(answer(entry, 9_500, marks)).toEqual({ entry, detail: "refresh-ahead" });
    expect(answer(entry, 15_000, marks)).toEqual({ entry, detail: "stale-while-revalidate" });
    marks.end("K");
    expect(answer(entry, 15_000, marks)).toBeUndefined();
    // freshHit never answers these: it knows of no refresh.
    expect(freshHit(memory(entry), route, "K", get, noHeaders, undefined, 9_500)).toBeUndefined();
  });

  it("past stale-while-revalidate: only while a refresh-ahead renews this very copy (refresh-ahead.ts renewedAhead)", () => {
    const marks = new RefreshMarks(30_000);
    marks.begin("K", 0);
    // A plain refresh (not ahead) gives no permission to serve past the windows.
    expect(answer(entry, 25_000, marks)).toBeUndefined();
    marks.end("K");
    marks.begin("K", 9_500, entry.staleAt);
    expect(answer(entry, 25_000, marks)).toEqual({ entry, detail: "stale-while-revalidate" });
    expect(answer({ ...entry, mustRevalidate: true }, 25_000, marks)).toBeUndefined();
  });

  it("a cached error is only ever a plain fresh hit; requests with preconditions go to the engine", () => {
    const marks = new RefreshMarks(30_000);
    marks.begin("K", 0, entry.staleAt);
    expect(answer({ ...entry, negative: true }, 15_000, marks)).toBeUndefined();
    const conditional = { client: new Headers({ "if-none-match": '"x"' }), selecting: new Headers() };
    expect(memoryAnswer(memory(entry), route, "K", get, conditional, undefined, 15_000, marks)).toBeUndefined();
  });
});
