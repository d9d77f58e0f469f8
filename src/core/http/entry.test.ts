import { describe, expect, it } from "vitest";
import { ageSeconds, decodeEntry, encodeEntry, entryMeta, ENTRY_FORMAT_VERSION, staleSince } from "./entry.ts";
import { isHerdlessError } from "../errors.ts";
import { testEntry } from "../store/store-conformance.ts";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    return isHerdlessError(error) ? error.code : String(error);
  }
}

describe("entry format", () => {
  it("round-trips every field and the body bytes", () => {
    const entry = testEntry("GET https://a.test/é?x=1", 1_000, {
      body: new Uint8Array([0, 255, 7]),
      tags: ["t"],
      lastModified: "Tue, 01 Jan 2030 00:00:00 GMT",
      namedUntil: [["accept-language", 61_000]],
      expiredAt: 900,
    });
    const decoded = decodeEntry(encodeEntry(entry));
    expect(entryMeta(decoded)).toEqual(entryMeta(entry));
    expect([...decoded.body]).toEqual([0, 255, 7]);
  });

  it("keeps an unconfirmed error's mark, and refuses one that is not a string (it would answer every request)", () => {
    const entry = testEntry("k", 0, { status: 500, askedBy: "00112233445566778899aabbccddeeff" });
    expect(decodeEntry(encodeEntry(entry)).askedBy).toBe(entry.askedBy);
    const damaged = encodeEntry({ ...entry, askedBy: 7 as unknown as string });
    expect(codeOf(() => decodeEntry(damaged))).toBe("ENTRY_CORRUPT");
  });

  it("refuses an unknown format version", () => {
    const bytes = encodeEntry({ ...testEntry("k", 0), v: 99 as typeof ENTRY_FORMAT_VERSION });
    expect(codeOf(() => decodeEntry(bytes))).toBe("ENTRY_VERSION");
  });

  it("refuses damaged input", () => {
    expect(codeOf(() => decodeEntry(new Uint8Array([0, 0])))).toBe("ENTRY_CORRUPT");
    expect(codeOf(() => decodeEntry(new Uint8Array([0, 0, 0, 50, 1, 2])))).toBe("ENTRY_CORRUPT");
    const garbage = new Uint8Array([0, 0, 0, 3, 123, 123, 123]);
    expect(codeOf(() => decodeEntry(garbage))).toBe("ENTRY_CORRUPT");
  });

  it("refuses metadata of the current version whose fields are not what it reads (a damaged or foreign write)", () => {
    const entry = testEntry("k", 0);
    const damaged: Record<string, unknown>[] = [
      { headers: "content-type: text/plain" },
      { headers: [["content-type", 7]] },
      { status: 99 },
      { status: "200" },
      { deleteAt: null },
      { vary: "accept" },
      { tags: [1] },
      { negative: "no" },
      { etag: 5 },
      { key: undefined },
      { namedUntil: [["accept-language", "soon"]] },
      { namedUntil: ["accept-language"] },
      { expiredAt: "long ago" },
    ];
    for (const fields of damaged) {
      expect(codeOf(() => decodeEntry(encodeEntry({ ...entry, ...fields } as typeof entry)))).toBe("ENTRY_CORRUPT");
    }
    expect(codeOf(() => decodeEntry(encodeEntry(entry)))).toBeUndefined();
  });

  it("RFC 9211 §2.4: a response that arrived stale counts its ttl from when it went stale, until a writer moves staleAt on", () => {
    const arrivedStale = testEntry("k", 10_000, { staleAt: 10_000, expiredAt: -30_000 });
    expect(staleSince(arrivedStale)).toBe(-30_000);
    expect(staleSince({ ...arrivedStale, staleAt: 70_000 })).toBe(70_000);
    expect(staleSince(testEntry("k", 10_000, { staleAt: 20_000 }))).toBe(20_000);
  });

  it("RFC 9111 §4.2.3: Age is the initial age plus time held, in whole seconds", () => {
    const entry = testEntry("k", 10_000, { initialAgeMs: 5_000 });
    expect(ageSeconds(entry, 10_000)).toBe(5);
    expect(ageSeconds(entry, 12_999)).toBe(7);
  });
});
