import { describe, expect, it } from "vitest";
import { hostRefusal } from "./request-check.ts";

describe("hostRefusal", () => {
  it("refuses a bad Host however many good ones were seen before (valid hosts are remembered, bad ones never)", () => {
    for (let i = 0; i < 600; i++) expect(hostRefusal([`site${i}.example:8080`])).toBeUndefined();
    for (const bad of ["a b", "x|y", "user@host", "[::1", "shop.example:99999999"]) {
      expect(hostRefusal([bad])?.status).toBe(400);
      expect(hostRefusal([bad])?.status).toBe(400);
    }
    expect(hostRefusal(["site1.example:8080"])).toBeUndefined();
    expect(hostRefusal(["[::1]:8080"])).toBeUndefined();
  });

  it("refuses two Host fields even when each is valid and known", () => {
    expect(hostRefusal(["shop.example"])).toBeUndefined();
    expect(hostRefusal(["shop.example", "shop.example"])?.status).toBe(400);
  });
});
