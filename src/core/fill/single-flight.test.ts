import { describe, expect, it } from "vitest";
import { SingleFlight } from "./single-flight.ts";

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe("single-flight", () => {
  it("runs once for 200 concurrent callers and gives each the same value", async () => {
    const flights = new SingleFlight<string, number>();
    const gate = deferred<number>();
    let calls = 0;
    const results = Array.from({ length: 200 }, () => flights.run("k", () => (calls++, gate.promise)));
    gate.resolve(7);
    const settled = await Promise.all(results);
    expect(calls).toBe(1);
    expect(settled.every((r) => r.value === 7)).toBe(true);
    expect(settled.filter((r) => !r.joined)).toHaveLength(1);
  });

  it("hands the error to every waiter and frees the key", async () => {
    const flights = new SingleFlight<string, number>();
    const gate = deferred<number>();
    const a = flights.run("k", () => gate.promise);
    const b = flights.run("k", () => Promise.resolve(1));
    gate.reject(new Error("origin down"));
    await expect(a).rejects.toThrow("origin down");
    await expect(b).rejects.toThrow("origin down");
    expect(flights.has("k")).toBe(false);
    expect((await flights.run("k", async () => 2)).value).toBe(2);
  });

  it("frees the key when fn throws synchronously", async () => {
    const flights = new SingleFlight<string, number>();
    await expect(
      flights.run("k", () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(flights.size).toBe(0);
  });

  it("keeps keys independent", async () => {
    const flights = new SingleFlight<string, string>();
    const [a, b] = await Promise.all([flights.run("a", async () => "A"), flights.run("b", async () => "B")]);
    expect([a.value, b.value, a.joined, b.joined]).toEqual(["A", "B", false, false]);
  });
});
