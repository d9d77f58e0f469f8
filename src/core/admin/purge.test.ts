import { describe, expect, it } from "vitest";
import {
  applyPurge,
  emptyPurges,
  parsePurgeCommand,
  PURGE_LIST_MAX_WEIGHT,
  purgeVerdict,
  recordPurge,
} from "./purge.ts";
import { testEntry } from "../store/store-conformance.ts";

const key = (url: string) => `GET ${url}`;
const keys = (url: string) => [key(url)];
const at = (snapshot = emptyPurges(), command: Parameters<typeof recordPurge>[1], now: number) =>
  recordPurge(snapshot, command, keys, now, 1_000_000);

describe("purge marks", () => {
  const entry = testEntry("GET https://a.test/p", 100, { tags: ["t1"] });

  it("covers entries stored at or before the purge, by URL, tag or all", () => {
    expect(purgeVerdict(entry, entry.key, at(undefined, { urls: ["https://a.test/p"] }, 100))).toBe("hard");
    expect(purgeVerdict(entry, entry.key, at(undefined, { tags: ["t1"], soft: true }, 200))).toBe("soft");
    expect(purgeVerdict(entry, entry.key, at(undefined, { all: true }, 200))).toBe("hard");
  });

  it("leaves entries stored after the purge, and other URLs and tags", () => {
    expect(purgeVerdict(entry, entry.key, at(undefined, { urls: ["https://a.test/p"] }, 99))).toBe("keep");
    expect(purgeVerdict(entry, entry.key, at(undefined, { urls: ["https://a.test/other"] }, 200))).toBe("keep");
    expect(purgeVerdict(entry, entry.key, at(undefined, { tags: ["t2"] }, 200))).toBe("keep");
  });

  it("covers an answer asked of the origin before the purge, even when it arrived after it", () => {
    const inFlight = testEntry("GET https://a.test/p", 300, { requestAt: 100, tags: ["t1"] });
    expect(purgeVerdict(inFlight, inFlight.key, at(undefined, { urls: ["https://a.test/p"] }, 200))).toBe("hard");
    expect(purgeVerdict(inFlight, inFlight.key, at(undefined, { tags: ["t1"], soft: true }, 200))).toBe("soft");
    expect(purgeVerdict(inFlight, inFlight.key, at(undefined, { all: true }, 99))).toBe("keep");
  });

  it("lets a hard purge win over a soft one", () => {
    const both = at(at(undefined, { tags: ["t1"], soft: true }, 200), { urls: ["https://a.test/p"] }, 200);
    expect(purgeVerdict(entry, entry.key, both)).toBe("hard");
  });

  it("soft purge makes the entry stale from the purge's instant, servable while it revalidates", () => {
    const purged = applyPurge(entry, entry.key, at(undefined, { all: true, soft: true }, 150))!;
    expect(purged.staleAt).toBe(150);
    expect(purged.swrUntil).toBe(entry.deleteAt);
    expect(
      applyPurge({ ...entry, mustRevalidate: true }, entry.key, at(undefined, { all: true, soft: true }, 150))!
        .swrUntil,
    ).toBe(150);
  });

  it("hard purge removes the entry", () => {
    expect(applyPurge(entry, entry.key, at(undefined, { all: true }, 150))).toBeUndefined();
  });

  it("finds no mark on the list's prototype: tags named constructor, toString or __proto__ are tags like any other", () => {
    const odd = testEntry("GET https://a.test/p", 100, { tags: ["constructor", "toString", "__proto__"] });
    expect(purgeVerdict(odd, odd.key, emptyPurges())).toBe("keep");
    const purged = at(undefined, { tags: ["__proto__"] }, 200);
    expect(purgeVerdict(odd, odd.key, purged)).toBe("hard");
    expect(purgeVerdict(entry, entry.key, purged)).toBe("keep");
    // As the list travels between edges (Redis, a Durable Object): JSON keeps the mark a field.
    expect(purgeVerdict(odd, odd.key, JSON.parse(JSON.stringify(purged)) as typeof purged)).toBe("hard");
  });

  it("drops marks past retention so the snapshot stays bounded", () => {
    const old = at(undefined, { urls: ["https://a.test/x"] }, 0);
    expect(Object.keys(recordPurge(old, { tags: ["t"] }, keys, 2_000_000, 1_000_000).keys)).toEqual([]);
  });
});

describe("the purge list's bound", () => {
  /** 20 purges of 200 URLs each (300 characters), one a second: more than the list may weigh. */
  const many = (soft: (round: number) => boolean) => {
    let list = emptyPurges();
    for (let round = 0; round < 20; round++) {
      const urls = Array.from({ length: 200 }, (_, i) => `https://a.test/product/${round}-${i}-`.padEnd(300, "x"));
      list = recordPurge(list, { urls, soft: soft(round) }, keys, 1_000 * (round + 1), 1e12);
    }
    return list;
  };
  const weight = (list: ReturnType<typeof emptyPurges>) =>
    Object.keys({ ...list.keys, ...list.tags }).reduce((sum, name) => sum + name.length + 32, 0);

  it("past its weight, the oldest marks fold into a purge of everything stored before them: nothing purged comes back", () => {
    const list = many(() => false);
    expect(weight(list)).toBeLessThanOrEqual(PURGE_LIST_MAX_WEIGHT);
    expect(JSON.stringify(list).length).toBeLessThan(2 * PURGE_LIST_MAX_WEIGHT);
    expect(list.all?.soft).toBe(false);
    // The first purged URL, stored before its purge, stays purged; the last round's marks are kept as they are.
    const first = testEntry(key("https://a.test/product/0-0-".padEnd(300, "x")), 500);
    expect(purgeVerdict(first, first.key, list)).toBe("hard");
    const last = key("https://a.test/product/19-0-".padEnd(300, "x"));
    expect(list.keys[last]).toEqual({ at: 20_000, soft: false });
    // An entry stored after the fold's instant and never purged is kept.
    const fresh = testEntry("GET https://a.test/other", list.all!.at + 1);
    expect(purgeVerdict(fresh, fresh.key, list)).toBe("keep");
  });

  it("the fold is soft only when every mark it takes is soft", () => {
    expect(many(() => true).all?.soft).toBe(true);
    expect(many((round) => round !== 0).all?.soft).toBe(false);
  });
});

describe("purge request validation", () => {
  it.each([
    [{ urls: ["https://a.test/p"] }, { urls: ["https://a.test/p"], soft: false }],
    [
      { tags: ["x"], soft: true },
      { tags: ["x"], soft: true },
    ],
    [
      { all: true, soft: true },
      { all: true, soft: true },
    ],
  ])("accepts %j", (body, parsed) => {
    expect(parsePurgeCommand(body)).toEqual(parsed);
  });

  it.each([
    [null, "must be a JSON object"],
    [{}, "exactly one of"],
    [{ urls: [], tags: ["a"] }, "exactly one of"],
    [{ urls: [] }, "non-empty array"],
    [{ urls: ["/relative"] }, "not an absolute URL"],
    [
      { urls: ["https://a.test/ok", "mailto:ops@example.com"] },
      '"mailto:ops@example.com" is not an http(s) URL (scheme mailto:)',
    ],
    [{ urls: ["ftp://example.com/page"] }, '"ftp://example.com/page" is not an http(s) URL (scheme ftp:)'],
    [{ urls: ["file:///etc/passwd"] }, '"file:///etc/passwd" is not an http(s) URL (scheme file:)'],
    [{ all: "yes" }, '"all" must be true'],
    [{ all: true, soft: 1 }, '"soft" must be true or false'],
    [{ url: ["https://a.test"] }, 'unknown purge field "url"'],
  ])("rejects %j with a message saying what is wrong", (body, message) => {
    expect(() => parsePurgeCommand(body)).toThrow(message);
  });
});
