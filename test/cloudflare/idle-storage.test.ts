/**
 * What an attacker's distinct URLs leave behind on the Worker. Every URL has a key object of
 * its own, and storage is billed per object, monthly: an object whose key keeps nothing (its
 * entry expired, its answer was `no-store`, its miss was refused) must keep no storage either,
 * not even empty tables or an alarm, and a refused miss writes no rows at all.
 */
import { runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ManualClock, systemClock } from "../../src/core/clock.ts";
import { DurableObjectStore } from "../../src/cloudflare/do-store.ts";
import type { KeyCoordinatorObject } from "../../src/cloudflare/key-coordinator-object.ts";
import { coordinatorOf, dataCenter, edgeEnv, settle, useGuardConfig, useInCoordinators } from "./edge-harness.ts";
import { inObject } from "./in-object.ts";
import { testOrigin } from "./test-origin.ts";

/** What a key's object keeps: its tables (workerd's own `_cf_` ones aside) and its alarm. */
async function kept(stub: DurableObjectStub<KeyCoordinatorObject>) {
  return inObject(stub, async (_instance, state) => ({
    tables: state.storage.sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE name NOT LIKE '\\_cf\\_%' ESCAPE '\\'")
      .toArray()
      .map((row) => row.name),
    alarm: await state.storage.getAlarm(),
  }));
}

const NOTHING = { tables: [], alarm: null };

describe("a key's object keeps no storage once its key keeps nothing", () => {
  it("an entry that expired and was deleted leaves no tables and no alarm; the next request is stored and hit again", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "max-age=1" } });
    const clock = new ManualClock(Date.now());
    const testEnv = edgeEnv(origin.url, { cache: { retainStaleMs: 0 } });
    await useInCoordinators(testEnv, ["/gone"], clock);
    const stub = coordinatorOf(testEnv, "/gone");

    // The attacker's one request for the URL, then nobody's.
    const first = await dataCenter(`idle-${crypto.randomUUID()}`, testEnv, clock).get("/gone");
    expect(first.cacheStatus).toMatch(/stored$/);
    await settle([first], testEnv, ["/gone"]);
    const deleteAt = await inObject(
      stub,
      async (_instance, state) =>
        (await new DurableObjectStore(state.storage, clock).get("GET https://edge.test/gone"))?.deleteAt,
    );
    clock.set(deleteAt!);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await kept(stub)).toEqual(NOTHING);

    // A visitor later: the object makes its tables again, stores, and serves every data center.
    const again = await dataCenter(`idle-${crypto.randomUUID()}`, testEnv, clock).get("/gone");
    expect(again).toMatchObject({ status: 200, body: "/gone #2" });
    expect(again.cacheStatus).toMatch(/stored$/);
    await settle([again], testEnv, ["/gone"]);
    const hit = await dataCenter(`idle-${crypto.randomUUID()}`, testEnv, clock).get("/gone");
    expect(hit).toMatchObject({ status: 200, body: "/gone #2" });
    expect(hit.cacheStatus).toMatch(/^herdless; hit/);
    expect(await origin.count()).toBe(2);
    expect((await kept(stub)).tables).toContain("herdless_entry");
  });

  it("an uncacheable (no-store) page leaves no storage once answered", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "no-store" } });
    const testEnv = edgeEnv(origin.url);
    const paths = ["/ns/1", "/ns/2", "/ns/3"];
    await useInCoordinators(testEnv, paths, systemClock);
    const dc = dataCenter(`idle-${crypto.randomUUID()}`, testEnv);
    const answers = await Promise.all(paths.map((path) => dc.get(path)));
    for (const answer of answers) expect(answer.cacheStatus).toMatch(/detail=uncacheable$/);
    await settle(answers, testEnv, paths);
    for (const path of paths) expect(await kept(coordinatorOf(testEnv, path))).toEqual(NOTHING);
    expect(await origin.count()).toBe(3);
  });

  it("a no-store page asked again and again makes its table at most once a minute, not on every fill", async () => {
    const origin = await testOrigin({ headers: { "cache-control": "no-store" } });
    // Real time, so fencing tokens fall behind the clock, and a minute that passes when told.
    let skippedMs = 0;
    const clock = { now: () => Date.now() + skippedMs };
    const testEnv = edgeEnv(origin.url);
    await useInCoordinators(testEnv, ["/dyn"], clock);
    const stub = coordinatorOf(testEnv, "/dyn");
    // A data center of its own each time: an isolate that saw the page uncacheable sends the next straight to the origin.
    const fill = async () => {
      const answer = await dataCenter(`idle-${crypto.randomUUID()}`, testEnv, clock).get("/dyn");
      expect(answer.cacheStatus).toMatch(/detail=uncacheable$/);
      await settle([answer], testEnv, ["/dyn"]);
    };
    const before = clock.now();
    await fill();
    const after = clock.now();
    expect(await kept(stub)).toEqual(NOTHING);
    await fill();
    await fill();
    // Kept since: the alarm frees it a minute after it was last freed.
    const { tables, alarm } = await kept(stub);
    expect(tables).toContain("herdless_leases");
    expect(alarm).toBeGreaterThanOrEqual(before + 60_000);
    expect(alarm).toBeLessThanOrEqual(after + 60_000);
    skippedMs = 60_000;
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await kept(stub)).toEqual(NOTHING);
    expect(await origin.count()).toBe(3);
  });
});

describe("a miss refused while the breaker is open writes nothing in its key's object", () => {
  it("distinct cold URLs answered 503 breaker-open write no row and leave no storage", async () => {
    const origin = await testOrigin({ mode: "down" });
    const testEnv = edgeEnv(origin.url, { breaker: { failureThreshold: 2, minFailingKeys: 2, backoffBaseMs: 0 } });
    const guardName = `idle-${crypto.randomUUID()}`;
    await useGuardConfig(testEnv, guardName);
    const refused = Array.from({ length: 5 }, (_, i) => `/cold/${i}`);
    await useInCoordinators(testEnv, ["/fail/1", "/fail/2", ...refused], systemClock, guardName);
    // The rows each refused URL's object writes, counted as the platform bills them.
    const written = new Map<string, number>();
    for (const path of refused)
      await inObject(coordinatorOf(testEnv, path), (_instance, state) => {
        const sql = state.storage.sql;
        const exec = sql.exec.bind(sql);
        sql.exec = ((query: string, ...bindings: SqlStorageValue[]) => {
          const cursor = exec(query, ...bindings);
          queueMicrotask(() => written.set(path, (written.get(path) ?? 0) + cursor.rowsWritten));
          return cursor;
        }) as typeof sql.exec;
      });
    const dc = dataCenter(`idle-${crypto.randomUUID()}`, testEnv);

    // Two keys fail: the breaker opens.
    for (const path of ["/fail/1", "/fail/2"]) expect((await dc.get(path)).status).toBe(502);
    const answers = [];
    for (const path of refused) {
      const answer = await dc.get(path);
      expect(answer.status).toBe(503);
      expect(answer.cacheStatus).toMatch(/detail=breaker-open$/);
      answers.push(answer);
    }
    await settle(answers, testEnv, refused);
    expect(await origin.count()).toBe(2);
    for (const path of refused) {
      expect(written.get(path) ?? 0).toBe(0);
      expect(await kept(coordinatorOf(testEnv, path))).toEqual(NOTHING);
    }
  });
});
