import { DurableObject } from "cloudflare:workers";
import type { Clock } from "../core/clock.ts";
import { systemClock } from "../core/clock.ts";
import { routeFor } from "../core/config.ts";
import { primaryKey } from "../core/key.ts";
import { emptyPurges, PURGE_RETAIN_MS, recordPurge, type PurgeCommand, type PurgeRegistry, type PurgeSnapshot } from "../core/purge.ts";
import { configFromEnv, type Env } from "./env.ts";

const STORAGE_KEY = "purges";

/**
 * The purge list of a Cloudflare deployment: one object (`idFromName("global")`) keeps the
 * snapshot in storage. Edges read it at most every `admin.purgePropagationMs`.
 */
export class PurgeRegistryObject extends DurableObject<Env> {
  private clock: Clock = systemClock;

  async snapshot(): Promise<PurgeSnapshot> {
    return (await this.ctx.storage.get<PurgeSnapshot>(STORAGE_KEY)) ?? emptyPurges();
  }

  /** Records a purge; storage writes of one object are serialized, so concurrent purges all land. */
  async purge(command: PurgeCommand): Promise<PurgeSnapshot> {
    const config = configFromEnv(this.env);
    const keyOf = (url: string) => {
      const parsed = new URL(url);
      return primaryKey(parsed, routeFor(config, parsed.pathname).key);
    };
    const next = recordPurge(await this.snapshot(), command, keyOf, this.clock.now(), PURGE_RETAIN_MS);
    await this.ctx.storage.put(STORAGE_KEY, next);
    return next;
  }

  /** Test hook: drive the object's clock. */
  setNowForTest(now: number): void {
    this.clock = { now: () => now };
  }
}

/**
 * The edge's view of the purge list: a per-isolate copy no older than `propagationMs`, so a
 * cache hit costs no round trip; a purge returns once every isolate's copy must include it.
 */
export class DurableObjectPurgeRegistry implements PurgeRegistry {
  private cached: { snapshot: PurgeSnapshot; fetchedAt: number } | undefined;
  private pending: Promise<PurgeSnapshot> | undefined;

  constructor(
    private readonly namespace: DurableObjectNamespace<PurgeRegistryObject>,
    private readonly propagationMs: number,
    private readonly now: () => number = () => Date.now(),
  ) {}

  current(): PurgeSnapshot | Promise<PurgeSnapshot> {
    if (this.cached && this.now() - this.cached.fetchedAt < this.propagationMs) return this.cached.snapshot;
    return (this.pending ??= this.load().finally(() => (this.pending = undefined)));
  }

  async purge(command: PurgeCommand): Promise<void> {
    const snapshot = await this.stub().purge(command);
    this.cached = { snapshot, fetchedAt: this.now() };
    await new Promise((resolve) => setTimeout(resolve, this.propagationMs));
  }

  private async load(): Promise<PurgeSnapshot> {
    // The copy is valid from when the read started: anything purged before that is in it.
    const startedAt = this.now();
    const snapshot = await this.stub().snapshot();
    this.cached = { snapshot, fetchedAt: startedAt };
    return snapshot;
  }

  private stub() {
    return this.namespace.get(this.namespace.idFromName("global"));
  }
}
