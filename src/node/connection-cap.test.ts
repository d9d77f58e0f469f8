import { createServer } from "node:http";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../core/clock.ts";
import { parseConfig } from "../core/config.ts";
import { capConnections, derivedMaxConnections, openFileLimit } from "./connection-cap.ts";
import { jsonLogger } from "./logger.ts";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             63704                63704                processes
Max open files            20000                524288               files
Max locked memory         8388608              8388608              bytes
`;

const stack = (origin: Record<string, unknown> = {}, server: Record<string, unknown> = {}) => ({
  config: config(origin, server),
  clock: new ManualClock(0),
});

const config = (origin: Record<string, unknown> = {}, server: Record<string, unknown> = {}) =>
  parseConfig({ origin: { url: "http://127.0.0.1:8080", ...origin }, server });

describe("the default cap on client connections", () => {
  it("reads the soft open-file limit from /proc/self/limits, and nothing where it cannot", () => {
    expect(openFileLimit(() => LIMITS)).toBe(20_000);
    expect(openFileLimit(() => LIMITS.replace("20000      ", "unlimited  "))).toBe(1_048_576);
    expect(
      openFileLimit(() => {
        throw new Error("ENOENT");
      }),
    ).toBeUndefined();
    expect(openFileLimit(() => "Max processes 10 10 processes\n")).toBeUndefined();
  });

  it("leaves files for Redis and logs, two per origin permit and the origin side of every WebSocket tunnel", () => {
    // 20000 - 128 - 2 × 8 - 1000
    expect(derivedMaxConnections(config(), 20_000)).toBe(18_856);
    expect(derivedMaxConnections(config({ maxConcurrency: 100 }), 20_000)).toBe(18_672);
    expect(derivedMaxConnections(config({ webSockets: false }), 20_000)).toBe(19_856);
    // A low limit: tunnels may take half of what is left (each is a client connection too).
    expect(derivedMaxConnections(config(), 1_024)).toBe(440);
    // Where the limit cannot be read: 4096 assumed.
    expect(derivedMaxConnections(config(), undefined)).toBe(2_952);
    // Never fewer than 32, however low the limit.
    expect(derivedMaxConnections(config({ maxConcurrency: 1_000 }), 1_024)).toBe(32);
  });

  it("is the operator's server.maxConnections when set, with a warning when the open-file limit cannot hold it", () => {
    const lines: string[] = [];
    const logger = jsonLogger("warn", (line) => lines.push(line));
    expect(capConnections(createServer(), stack({}, { maxConnections: 500 }), logger, { fileLimit: 20_000 }).max).toBe(
      500,
    );
    expect(lines).toEqual([]);
    expect(capConnections(createServer(), stack(), logger, { fileLimit: 20_000 }).max).toBe(18_856);
    expect(
      capConnections(createServer(), stack({}, { maxConnections: 19_000 }), logger, { fileLimit: 20_000 }).max,
    ).toBe(19_000);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: "warn",
      maxConnections: 19_000,
      openFileLimit: 20_000,
      fits: 18_856,
    });
  });
});
