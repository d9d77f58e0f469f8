import { describe, expect, it } from "vitest";
import { describeRedisTarget, parseRedisTarget, redisTargetFromConfig } from "./target.ts";

/** The CONFIG_INVALID message `read` throws for `value`. */
function refusal(read: () => unknown): string {
  try {
    read();
  } catch (error) {
    expect((error as { code?: string }).code).toBe("CONFIG_INVALID");
    return (error as Error).message;
  }
  throw new Error("accepted");
}

describe("Redis targets", () => {
  it("reads one URL, a Sentinel URL and a Cluster list, credentials %-decoded", () => {
    expect(parseRedisTarget("redis://:p%40ss@10.0.0.1:6379/2")).toEqual({
      kind: "single",
      url: "redis://:p%40ss@10.0.0.1:6379/2",
    });
    expect(parseRedisTarget("redis+sentinel://u:p%40ss@10.0.0.1:26379,10.0.0.2/my%20master/3")).toEqual({
      kind: "sentinel",
      sentinels: [
        { host: "10.0.0.1", port: 26379 },
        { host: "10.0.0.2", port: 26379 },
      ],
      name: "my master",
      username: "u",
      password: "p@ss",
      db: 3,
    });
    expect(parseRedisTarget("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001")).toMatchObject({
      kind: "cluster",
      password: "pw",
    });
  });

  it("never repeats a password in an error, whichever part of the value is wrong", () => {
    for (const value of [
      "redis://:hunter2-hunter2@10.0.0.1:99999",
      "redis://user:hunter2-hunter2@",
      "http://:hunter2-hunter2@10.0.0.1:6379",
      "redis+sentinel://:hunter2-hunter2@10.0.0.1:99999/mymaster",
      "redis+cluster://:hunter2-hunter2@10.0.0.1:0",
      "redis://:hunter2-hunter2@10.0.0.1:7000,redis://:hunter2-hunter2@10.0.0.2:99999",
      "redis://10.0.0.1:6379/x?password=hunter2-hunter2",
    ]) {
      const message = refusal(() => parseRedisTarget(value));
      expect(message, value).toMatch(/^redis/);
      expect(message, value).not.toContain("hunter2");
    }
  });

  it("describes a target without its credentials or query", () => {
    expect(describeRedisTarget(parseRedisTarget("redis://u:hunter2@10.0.0.1:6379/1?password=hunter2"))).toBe(
      "redis://10.0.0.1:6379/1",
    );
  });

  it("refuses a malformed %-escape naming the value (redacted), not 'URI malformed'", () => {
    const message = refusal(() => parseRedisTarget("redis+sentinel://:pa%zz@10.0.0.1:26379/mymaster"));
    expect(message).toContain(
      'redis: "redis+sentinel://<credentials>@10.0.0.1:26379/mymaster" has a malformed %-escape',
    );
    expect(refusal(() => parseRedisTarget("redis+sentinel://10.0.0.1:26379/my%zzmaster"))).toContain(
      "malformed %-escape",
    );
  });

  it("refuses a URL with no host, a database that is not a number, or one beyond any server's", () => {
    expect(refusal(() => parseRedisTarget("redis://"))).toContain("names no host");
    expect(refusal(() => parseRedisTarget("redis://:pw@"))).toContain('"redis://<credentials>@" is not a URL');
    expect(refusal(() => parseRedisTarget("redis://10.0.0.1:6379/cache"))).toContain("not a database number");
    expect(refusal(() => parseRedisTarget("redis://10.0.0.1:6379/99999999999"))).toContain("from 0 to 65535");
    expect(refusal(() => parseRedisTarget("redis+sentinel://10.0.0.1/m/99999999999"))).toContain("from 0 to 65535");
    expect(refusal(() => redisTargetFromConfig({ sentinels: ["10.0.0.1"], name: "m", db: 1e9 }))).toContain(
      "redis.db must be a whole number from 0 to 65535",
    );
    expect(refusal(() => parseRedisTarget("  "))).toContain("redis is empty");
  });

  it("takes a config block's password as written: it is no URL", () => {
    expect(redisTargetFromConfig({ cluster: ["10.0.0.1:7000"], password: "50%off" })).toMatchObject({
      password: "50%off",
    });
  });
});
