import { afterAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/core/config.ts";
import { redisStack, type FleetStack } from "../../src/node/fleet-stack.ts";
import type { Logger } from "../../src/node/logger.ts";
import { redisTestConnection } from "./redis-server.ts";

/**
 * Members of one `cache.name` share every entry, lease and the cap (docs/node.md, "A fleet with
 * Redis"): one started with another origin (a second deployment given the same name, a config
 * changed on some machines only) serves the other origin's pages under the same keys. Nothing
 * said so; a member that starts beside members of another config now warns, naming them.
 */
const redis = redisTestConnection();
const stacks: FleetStack[] = [];
afterAll(async () => {
  for (const stack of stacks) await stack.close();
});

function listening(): { logger: Logger; warnings: { msg: string; fields?: Record<string, unknown> }[] } {
  const warnings: { msg: string; fields?: Record<string, unknown> }[] = [];
  const quiet = () => undefined;
  return {
    logger: { debug: quiet, info: quiet, error: quiet, warn: (msg, fields) => warnings.push({ msg, fields }) },
    warnings,
  };
}

async function member(originUrl: string, logger: Logger, prefix: string): Promise<FleetStack> {
  const config = parseConfig({ origin: { url: originUrl }, cache: { maxBytes: 4 * 1024 * 1024 } });
  const stack = await redisStack({ config, logger, redisUrl: redis.server.url, prefix });
  stacks.push(stack);
  return stack;
}

describe("members of one fleet with different configs", () => {
  it("a member started with another origin warns, naming the members it differs from; one with the same config does not", async () => {
    const prefix = redis.prefix();
    await member("http://127.0.0.1:8001", listening().logger, prefix);
    const same = listening();
    await member("http://127.0.0.1:8001", same.logger, prefix);
    const other = listening();
    await member("http://127.0.0.1:8002", other.logger, prefix);
    await expect
      .poll(() => other.warnings.map((w) => w.msg), { timeout: 3_000 })
      .toContainEqual(expect.stringMatching(/^fleet members run another config/));
    const warning = other.warnings.find((w) => w.msg.startsWith("fleet members run another config"));
    expect(warning?.fields?.["members"]).toHaveLength(2);
    expect(same.warnings.filter((w) => w.msg.startsWith("fleet members run another config"))).toEqual([]);
  });
});
