import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { heapLimitsFor, heapSizedByOperator, maxWaitingFor, serveInBoundedHeap, waitingLimit } from "./bounded-heap.ts";
import { parseConfig } from "../core/config.ts";

const MiB = 1024 * 1024;

describe("the heap of npx herdless", () => {
  it("is sized from cache.maxBytes: the cache, a quarter more, and 24 MiB; a young generation of 24 MiB, Node's 48 from a 256 MiB cache", () => {
    expect(heapLimitsFor(64 * MiB)).toEqual({ maxOldGenerationSizeMb: 104, maxYoungGenerationSizeMb: 24 });
    expect(heapLimitsFor(256 * MiB)).toEqual({ maxOldGenerationSizeMb: 344, maxYoungGenerationSizeMb: 48 });
    expect(heapLimitsFor(255 * MiB).maxYoungGenerationSizeMb).toBe(24);
    expect(heapLimitsFor(1)).toEqual({ maxOldGenerationSizeMb: 25, maxYoungGenerationSizeMb: 24 });
  });

  it("is left to the operator who sized it, on the command line or in NODE_OPTIONS", () => {
    expect(heapSizedByOperator(["--max-old-space-size=512"], undefined)).toBe(true);
    expect(heapSizedByOperator(["--max_old_space_size=512"], undefined)).toBe(true);
    expect(heapSizedByOperator(["--import", "tsx"], "--max-semi-space-size=4")).toBe(true);
    expect(heapSizedByOperator([], "--enable-source-maps --max-heap-size=300")).toBe(true);
    expect(heapSizedByOperator(["--import", "tsx"], "--enable-source-maps")).toBe(false);
    expect(heapSizedByOperator([], undefined)).toBe(false);
  });

  it("holds as many waiting requests as half the old generation's room beside the cache and the server, at 16 KiB each", () => {
    // npx herdless: the old generation 1.25 × the cache + 24 MiB, V8's limit adding the young generation.
    const served = (cacheMiB: number) => {
      const { maxOldGenerationSizeMb: old, maxYoungGenerationSizeMb: young } = heapLimitsFor(cacheMiB * MiB);
      return maxWaitingFor(cacheMiB * MiB, (old + young) * MiB, young * MiB);
    };
    // The red team's process exited at 2,600 waiting at a 16 MiB cache, 5,000 at 64 MiB.
    expect(served(16)).toBe(384);
    expect(served(64)).toBe(768);
    expect(served(256)).toBe(2304);
    // Node's own heap (4 GiB on a 16 GiB machine, a 48 MiB young generation) leaves far more room.
    expect(maxWaitingFor(256 * MiB, 4144 * MiB, 48 * MiB)).toBe(122_368);
    // A heap sized below the cache still lets a few wait.
    expect(maxWaitingFor(256 * MiB, 100 * MiB, 48 * MiB)).toBe(32);
  });

  it("is origin.maxWaiting when the operator sets it", () => {
    const origin = { url: "http://127.0.0.1:8080" };
    expect(waitingLimit(parseConfig({ origin: { ...origin, maxWaiting: 12 } }))).toBe(12);
    expect(waitingLimit(parseConfig({ origin }))).toBe(maxWaitingFor(256 * MiB));
  });
});

describe("the serving worker", () => {
  it("ends once it has reported its exit code, even with a handle still open (a failed start's Redis connection)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "herdless-worker-"));
    try {
      const entry = join(dir, "lingering.mjs");
      // The CLI's worker after a failed start: the code reported, a timer (a reconnecting client) left running.
      await writeFile(
        entry,
        'import { parentPort } from "node:worker_threads";\nparentPort.postMessage({ exitCode: 2 });\nsetInterval(() => undefined, 1000);\n',
      );
      const started = Date.now();
      const code = await Promise.race([
        serveInBoundedHeap(pathToFileURL(entry), [], heapLimitsFor(64 * MiB), () => undefined),
        // Before: it never ended (the process hung, and took one SIGTERM without stopping).
        new Promise<string>((resolve) => setTimeout(() => resolve("still running after 5 s"), 5_000)),
      ]);
      expect(code).toBe(2);
      expect(Date.now() - started).toBeLessThan(4_000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
