import { describe, expect, it } from "vitest";
import { testEntry } from "../../core/store/store-conformance.ts";
import { ANNOUNCED_ENTRY_BYTES, fillNews, heardFrom } from "./fill-news.ts";

const T0 = 1_900_000_000_000;

describe("a flight's announcement on a fleet's fill channel", () => {
  it("carries a small stored entry, which the waiter gets back whole", () => {
    const entry = testEntry("GET https://site.test/page", T0, { token: 42 });
    const heard = heardFrom(fillNews("done:42", entry));
    expect(heard.message).toBe("done:42");
    expect(heard.entry).toEqual(entry);
  });

  it("leaves out an entry too large to go with it, and says the rest as before", () => {
    const large = { ...testEntry("k", T0), body: new Uint8Array(ANNOUNCED_ENTRY_BYTES + 1) };
    expect(fillNews("done:7", large)).toBe("done:7");
    expect(fillNews("failed:ORIGIN_NETWORK", undefined)).toBe("failed:ORIGIN_NETWORK");
    expect(heardFrom("alone")).toEqual({ message: "alone" });
  });

  it("an entry that cannot be read (another format version, damaged) is left out: the waiter reads the store", () => {
    expect(heardFrom("done:42\nnot an entry")).toEqual({ message: "done:42" });
    const other = Buffer.from(JSON.stringify({ v: 1 }));
    const framed = Buffer.concat([Buffer.from([0, 0, 0, other.length]), other]);
    expect(heardFrom(`done:42\n${framed.toString("base64")}`)).toEqual({ message: "done:42" });
  });
});
