import { DurableObject } from "cloudflare:workers";
import type { Clock } from "../core/clock.ts";
import { systemClock } from "../core/clock.ts";
import { routeFor } from "../core/config.ts";
import { primaryKey } from "../core/http/key.ts";
import {
  emptyPurges,
  PURGE_RETAIN_MS,
  recordPurge,
  type PurgeCommand,
  type PurgeRegistry,
  type PurgeSnapshot,
} from "../core/admin/purge.ts";
import { configFromEnv, type ConfigEnv } from "./config-env.ts";

const STORAGE_KEY = "purges";

/**
 * The purge list of a Cloudflare deployment: one object (`idFromName("global")`) keeps the
 * snapshot in storage. Edges read it at most every `admin.purgePropagationMs`.
 */
export class PurgeRegistryObject extends DurableObject<ConfigEnv> {
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
 *
 * If the registry object cannot be read, the edge keeps serving with the last copy it has
 * (an empty one before any) and tries again `propagationMs` later; `onError` hears about
 * the first failure of each outage. A purge in that state fails (the caller sees it), so
 * only a purge recorded just before the outage can be missed meanwhile.
 */
export class DurableObjectPurgeRegistry implements PurgeRegistry {
  private cached: { snapshot: PurgeSnapshot; fetchedAt: number } | undefined;
  private failing = false;

  constructor(
    private readonly namespace: DurableObjectNamespace<PurgeRegistryObject>,
    private readonly propagationMs: number,
    private readonly now: () => number = () => Date.now(),
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  /** The copy if it is within its bound; undefined (and no read started) otherwise. */
  fresh(): PurgeSnapshot | undefined {
    return this.cached && this.now() - this.cached.fetchedAt < this.propagationMs ? this.cached.snapshot : undefined;
  }

  current(): PurgeSnapshot | Promise<PurgeSnapshot> {
    const copy = this.fresh();
    if (copy) return copy;
    // Each request reads for itself: a promise shared across requests is cancelled by the
    // runtime for the others when the request that started it ends ("code had hung").
    // Only requests arriving while the copy is past its bound pay the read.
    return this.load();
  }

  async purge(command: PurgeCommand): Promise<void> {
    const snapshot = await this.stub().purge(command);
    this.cached = { snapshot, fetchedAt: this.now() };
    await new Promise((resolve) => setTimeout(resolve, this.propagationMs));
  }

  private async load(): Promise<PurgeSnapshot> {
    // The copy is valid from when the read started: anything purged before that is in it.
    const startedAt = this.now();
    let snapshot: PurgeSnapshot;
    try {
      snapshot = await this.stub().snapshot();
      this.failing = false;
    } catch (error) {
      if (!this.failing) this.onError(error);
      this.failing = true;
      snapshot = this.cached?.snapshot ?? emptyPurges();
    }
    // Reads finish out of order: keep the copy whose read started last.
    if (!this.cached || startedAt >= this.cached.fetchedAt) this.cached = { snapshot, fetchedAt: startedAt };
    return snapshot;
  }

  private stub() {
    return this.namespace.get(this.namespace.idFromName("global"));
  }
}
