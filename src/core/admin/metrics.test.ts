import { describe, expect, it } from "vitest";
import { ManualClock } from "../clock.ts";
import { Metrics, type ServeKind } from "./metrics.ts";

/** Two Metrics on one clock and one timer: `counted` takes every answer with `count`, `tallied` takes hits on tallies. */
function twins() {
  const clock = new ManualClock(1_700_000_000_250);
  const timer = new ManualClock(0);
  const counted = new Metrics(clock, timer);
  const tallied = new Metrics(clock, timer);
  const tallies = new Map<string, ReturnType<Metrics["tally"]>>();
  const hit = (key: string, kind: ServeKind = "hit") => {
    const started = timer.now();
    timer.advance(0.2);
    counted.count(kind, key, started, clock.now());
    let tally = tallies.get(`${kind} ${key}`);
    if (!tally) tallies.set(`${kind} ${key}`, (tally = tallied.tally(kind, key)));
    tallied.countOn(tally, clock.now(), started);
  };
  const other = (kind: ServeKind, key?: string) => {
    for (const metrics of [counted, tallied]) metrics.count(kind, key);
  };
  const originCall = () => {
    for (const metrics of [counted, tallied]) metrics.originCall("200");
  };
  /** Everything a reader can see, as it would be sent (JSON: the order of keys too). */
  const seen = (metrics: Metrics) =>
    JSON.stringify({
      view: metrics.view(),
      requests: metrics.requests,
      hitRatio: metrics.hitRatio,
      latency: [...metrics.latency.entries()].map(([kind, h]) => [kind, [...h.buckets], h.sum, h.count]),
    });
  const expectSame = () => expect(seen(tallied)).toBe(seen(counted));
  return { clock, counted, tallied, tallies, hit, other, originCall, expectSame };
}

/** Each way the counters are read, on its own (a read folds for every later one). */
const READERS: Record<string, (metrics: Metrics) => unknown> = {
  served: (m) => ({ ...m.served }),
  requests: (m) => m.requests,
  hitRatio: (m) => m.hitRatio,
  series: (m) => m.series(),
  topKeys: (m) => m.topKeys(),
  view: (m) => m.view(),
};

describe("Metrics tallies", () => {
  for (const [name, read] of Object.entries(READERS)) {
    it(`read by ${name} first, mid-second and after the second changed, show exactly what was counted`, () => {
      const t = twins();
      const expectRead = () => expect(JSON.stringify(read(t.tallied))).toBe(JSON.stringify(read(t.counted)));
      t.hit("/a");
      t.hit("/a");
      t.other("miss", "/m");
      t.hit("/b");
      expectRead();
      t.hit("/b");
      t.clock.advance(900);
      t.hit("/a");
      expectRead();
      t.expectSame();
    });
  }

  it("show, when read mid-second, exactly the counts of the answers so far", () => {
    const t = twins();
    for (let i = 0; i < 3; i++) t.hit("/a");
    t.hit("/b");
    t.expectSame();
    expect(t.tallied.served.hit).toBe(4);
    const series = t.tallied.series();
    expect(series).toHaveLength(1);
    expect(series[0]!.served).toEqual({ hit: 4 });
    expect(t.tallied.topKeys()).toEqual([
      { key: "/a", requests: 3 },
      { key: "/b", requests: 1 },
    ]);
    // Read again without new answers, then counted on: nothing is counted twice.
    t.expectSame();
    t.hit("/a");
    t.clock.advance(500);
    t.hit("/b");
    t.expectSame();
    expect(t.tallied.topKeys()).toEqual([
      { key: "/a", requests: 4 },
      { key: "/b", requests: 2 },
    ]);
  });

  it("put each answer in the second it was counted in, when the second changes and when read seconds later", () => {
    const t = twins();
    t.hit("/a");
    t.hit("/a");
    // 750 ms in: the next second.
    t.clock.advance(750);
    t.hit("/a");
    t.expectSame();
    expect(t.tallied.series().map((s) => [s.at % 10_000, s.served])).toEqual([
      [0, { hit: 2 }],
      [1_000, { hit: 1 }],
    ]);
    t.hit("/b", "negative");
    // No answer for 5 s, then a read: the last second keeps its counts.
    t.clock.advance(5_000);
    t.expectSame();
    expect(t.tallied.series().map((s) => [s.at % 10_000, s.served])).toEqual([
      [0, { hit: 2 }],
      [1_000, { hit: 1, negative: 1 }],
    ]);
    // An answer counted without a tally and an origin call, seconds later: the tallies' counts stay in their second.
    t.hit("/a");
    t.other("miss", "/c");
    t.originCall();
    t.expectSame();
    expect(t.tallied.series().at(-1)!.served).toEqual({ hit: 1, miss: 1 });
    expect(t.tallied.series().at(-1)!.origin).toBe(1);
    // Past the two minutes' window, the old seconds go, as counted ones do.
    t.clock.advance(120_000);
    t.hit("/b");
    t.expectSame();
    expect(t.tallied.series().map((s) => s.served)).toEqual([{ hit: 1 }]);
  });

  it("keep the order answers were counted in within a second and between keys", () => {
    const t = twins();
    // A key first seen on a count, then on a tally, then ties: the top list and each second's
    // fields come out in the same order as counted one by one.
    t.other("miss", "/m");
    t.hit("/a");
    t.other("stale", "/s");
    t.hit("/b");
    t.hit("/m");
    t.other("bypass");
    t.expectSame();
    t.clock.advance(1_000);
    t.hit("/z");
    t.other("miss", "/y");
    t.hit("/z");
    t.expectSame();
    expect(t.tallied.topKeys().map((k) => k.key)).toEqual(["/m", "/z", "/a", "/s", "/b", "/y"]);
  });

  it("count a replaced tally's answers once (an entry replaced while its hits were not folded)", () => {
    const t = twins();
    t.hit("/a");
    t.hit("/a");
    // The same key on a new tally (the entry was replaced), the old one still holding its two.
    const replacement = t.tallied.tally("hit", "/a");
    t.counted.count("hit", "/a", undefined, t.clock.now());
    t.tallied.countOn(replacement, t.clock.now());
    t.expectSame();
    expect(t.tallied.topKeys()).toEqual([{ key: "/a", requests: 3 }]);
    expect(t.tallied.served.hit).toBe(3);
  });

  it("time each tallied answer at once, in its kind's histogram", () => {
    const t = twins();
    t.hit("/a");
    t.hit("/n", "negative");
    const histograms = new Map([...t.tallied.latency.entries()]);
    expect(histograms.get("hit")!.count).toBe(1);
    expect(histograms.get("negative")!.count).toBe(1);
    expect(histograms.get("hit")!.sum).toBeCloseTo(0.0002);
    t.expectSame();
  });
});

describe("the top keys", () => {
  it("an attacker's 10,500 cold URLs, then a page that turns hot: the hot page is on top", () => {
    const metrics = new Metrics(new ManualClock(1_700_000_000_000), new ManualClock(0));
    for (let i = 0; i < 10_500; i++) metrics.count("miss", `/cold/${i}`);
    for (let i = 0; i < 300; i++) metrics.count("hit", "/hot");
    expect(metrics.topKeys(1)).toEqual([{ key: "/hot", requests: 300 }]);
  });

  it("a page hot before the table filled keeps its place, its count halved", () => {
    const metrics = new Metrics(new ManualClock(1_700_000_000_000), new ManualClock(0));
    for (let i = 0; i < 1_000; i++) metrics.count("hit", "/home");
    for (let i = 0; i < 10_000; i++) metrics.count("miss", `/cold/${i}`);
    expect(metrics.topKeys(1)).toEqual([{ key: "/home", requests: 500 }]);
  });
});
