import { DurableObject } from "cloudflare:workers";
import type { Clock } from "../core/clock.ts";
import { systemClock } from "../core/clock.ts";
import {
  emptyPurges,
  PURGE_RETAIN_MS,
  purgeKeyOf,
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
  /**
   * The list as stored, kept in memory once read: every data center reads it about once per
   * bound, and a storage read per call would be billed each time. Only this object writes it.
   */
  private known: PurgeSnapshot | undefined;

  async snapshot(): Promise<PurgeSnapshot> {
    return (this.known ??= (await this.ctx.storage.get<PurgeSnapshot>(STORAGE_KEY)) ?? emptyPurges());
  }

  /** Records a purge; storage writes of one object are serialized, so concurrent purges all land. */
  async purge(command: PurgeCommand): Promise<PurgeSnapshot> {
    const keyOf = purgeKeyOf(configFromEnv(this.env));
    const next = recordPurge(await this.snapshot(), command, keyOf, this.clock.now(), PURGE_RETAIN_MS);
    // Kept before the write is awaited, so a purge arriving meanwhile builds on this one; the
    // output gate holds every answer until the write is durable (a failed one resets the object).
    this.known = next;
    await this.ctx.storage.put(STORAGE_KEY, next);
    return next;
  }

  /** Test hook: drive the object's clock. */
  setNowForTest(now: number): void {
    this.clock = { now: () => now };
  }
}

/** Where a data center keeps its copy of the purge list in its Cache API (never a page URL). */
export const PURGE_LIST_URL = "https://herdless.internal/__herdless/purge-list";
/**
 * A read of the Cache API copy and, at worst, of the registry object takes milliseconds; a
 * request waits this long on the isolate's read before making its own.
 */
const JOIN_READ_MS = 1_000;
/** A copy is renewed at most this long before its bound ends (see DurableObjectPurgeRegistry.fresh). */
const RENEW_AHEAD_MAX_MS = 1_000;
/** The instant (epoch ms) the copy's read of the registry object started. */
const READ_AT_HEADER = "x-herdless-purges-read-at";

/**
 * The edge's view of the purge list, in two tiers so that the one registry object is read
 * about once per data center per `propagationMs`, not once per isolate: this isolate's
 * copy, then the data center's copy in its Cache API, then the object. Every copy is valid
 * for `propagationMs` from the moment its read of the object started, whichever tier holds
 * it, so a purge that waits `propagationMs` after it is recorded is honoured by every edge.
 *
 * If the registry object cannot be read, the edge keeps serving with the last copy it has
 * (an empty one before any), and the copy stays as old as it was: the next request reads
 * again (one read per isolate at a time, as ever). `onError` hears about the first failure
 * of each outage. A purge in that state fails (the caller sees it), so only a purge
 * recorded just before the outage can be missed meanwhile, and only while the reads fail.
 */
export class DurableObjectPurgeRegistry implements PurgeRegistry {
  private cached: { snapshot: PurgeSnapshot; fetchedAt: number } | undefined;
  private failing = false;
  private sharing = false;
  private sharedAt = -Infinity;
  /** The isolate's read of the list in flight (a renewal, or a read of a lapsed copy), shared by the requests meanwhile. */
  private loading: Promise<PurgeSnapshot> | undefined;
  /** How long the isolate's slow reads of the list take (ms): the last one, or 0.9 × the previous value if that is more. */
  private slowReadMs = 0;
  /** Reads of the registry object this isolate made (stats and the scale simulation). */
  objectReads = 0;

  constructor(
    private readonly namespace: DurableObjectNamespace<PurgeRegistryObject>,
    private readonly propagationMs: number,
    private readonly now: () => number = () => Date.now(),
    private readonly onError: (error: unknown) => void = () => undefined,
    /** The data center's cache; undefined where the Cache API is inert (`*.workers.dev`). */
    private readonly dataCenter?: () => Promise<Cache>,
  ) {}

  /**
   * The copy if it is within its bound; undefined (and no read started) otherwise. Given
   * `background` (ctx.waitUntil), a copy in the last stretch of its bound (from
   * {@link renewAtMs}) is renewed behind the answer, by one read per isolate at a time: under
   * steady traffic the copy never lapses, so no request waits on a read of the list, and the
   * registry is read about once per data center per bound (bound ÷ renewAtMs times: 1.33 at
   * the default 1 s while reads are quick). When it lapses (no traffic for a bound, or a
   * renewal slower than the stretch), every request that arrives before a read returns pays
   * for one, and takes the full path of the edge.
   */
  fresh(background?: (work: Promise<unknown>) => void): PurgeSnapshot | undefined {
    if (!this.cached) return undefined;
    const ageMs = this.now() - this.cached.fetchedAt;
    if (ageMs >= this.propagationMs) return undefined;
    // A data-center copy that is itself due would renew nothing for long: only a younger one is taken.
    if (background && !this.loading && ageMs >= this.renewAtMs) this.read(this.renewAtMs, background);
    return this.cached.snapshot;
  }

  /**
   * A copy this old is renewed: a quarter of the bound before it ends (at most
   * {@link RENEW_AHEAD_MAX_MS} before), which a read of the Cache API and the object takes
   * easily (milliseconds), or twice as long before as the isolate's slow reads took, up to
   * half the bound. Reads that take hundreds of milliseconds (a loaded runtime) started in the
   * last quarter let the copy lapse under steady traffic, and every request of the isolate
   * then waited on the read: woken across requests, as late as the runtime's next idle moment
   * (1–2 s under a spike in local workerd, bench/README.md "The Worker's 1–2 s outliers").
   */
  private get renewAtMs(): number {
    const ahead = Math.max(Math.min(this.propagationMs / 4, RENEW_AHEAD_MAX_MS), 2 * this.slowReadMs);
    return this.propagationMs - Math.min(ahead, this.propagationMs / 2);
  }

  /**
   * The copy while it is within its bound; otherwise one read for the whole isolate: the
   * requests arriving while it runs (or while a renewal runs) wait on it, each for at most
   * {@link JOIN_READ_MS}, then read for themselves (a read belongs to the request that
   * started it, and the runtime may cancel it with that request). `background`
   * (ctx.waitUntil) keeps the read alive past that request and takes the data center's copy
   * write off its answer.
   */
  current(background?: (work: Promise<unknown>) => void): PurgeSnapshot | Promise<PurgeSnapshot> {
    const copy = this.fresh(background);
    if (copy) return copy;
    if (this.loading) return this.join(this.loading, background);
    return this.read(this.propagationMs, background);
  }

  /** Starts the isolate's shared read (see {@link current}). */
  private read(maxAgeMs: number, background?: (work: Promise<unknown>) => void): Promise<PurgeSnapshot> {
    const startedAt = this.now();
    const read = this.load(maxAgeMs, background);
    this.loading = read;
    const settled = read.finally(() => {
      if (this.loading === read) this.loading = undefined;
      // A slow read counts at once; quick ones bring the renewal back to its quarter over some
      // ten reads (under load, reads of a few ms and of hundreds alternate).
      this.slowReadMs = Math.max(this.now() - startedAt, this.slowReadMs * 0.9);
    });
    if (background) background(settled);
    return read;
  }

  /** The isolate's read in flight, or this request's own read if it does not settle in time. */
  private async join(
    read: Promise<PurgeSnapshot>,
    background: ((work: Promise<unknown>) => void) | undefined,
  ): Promise<PurgeSnapshot> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), JOIN_READ_MS);
    });
    try {
      return (await Promise.race([read, late])) ?? (await this.load(this.propagationMs, background));
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  async purge(command: PurgeCommand): Promise<void> {
    const readAt = this.now();
    const snapshot = await this.stub().purge(command);
    this.keep(snapshot, readAt);
    await this.share(snapshot, readAt);
    await new Promise((resolve) => setTimeout(resolve, this.propagationMs));
  }

  /** Reads the list: the data center's copy if it is younger than `maxAgeMs`, else the object. */
  private async load(
    maxAgeMs = this.propagationMs,
    background?: (work: Promise<unknown>) => void,
  ): Promise<PurgeSnapshot> {
    const shared = await this.fromDataCenter(maxAgeMs);
    if (shared) {
      this.keep(shared.snapshot, shared.fetchedAt);
      return shared.snapshot;
    }
    // The copy is valid from when the read started: anything purged before that is in it.
    const startedAt = this.now();
    let snapshot: PurgeSnapshot;
    try {
      this.objectReads++;
      snapshot = await this.stub().snapshot();
      this.failing = false;
      // One request per isolate and copy makes the put (see share); behind the answer when it can.
      const shared = this.share(snapshot, startedAt);
      if (background) background(shared);
      else await shared;
    } catch (error) {
      if (!this.failing) this.onError(error);
      this.failing = true;
      // The requests that waited on this read are served with the copy the isolate has, but
      // the copy keeps the date of its own read: dated from this failed one, it would pass for
      // a list holding every purge recorded before it, and a purge that had already returned
      // would go unhonoured here for another bound. The next request reads again.
      return this.cached?.snapshot ?? emptyPurges();
    }
    this.keep(snapshot, startedAt);
    return snapshot;
  }

  /** Reads finish out of order: keep the copy whose read started last. */
  private keep(snapshot: PurgeSnapshot, fetchedAt: number): void {
    if (!this.cached || fetchedAt >= this.cached.fetchedAt) this.cached = { snapshot, fetchedAt };
  }

  /** The data center's copy, when one is there and younger than `maxAgeMs` (at most the bound). */
  private async fromDataCenter(maxAgeMs: number): Promise<{ snapshot: PurgeSnapshot; fetchedAt: number } | undefined> {
    if (!this.dataCenter) return undefined;
    try {
      const response = await (await this.dataCenter()).match(PURGE_LIST_URL);
      if (!response) return undefined;
      const fetchedAt = Number(response.headers.get(READ_AT_HEADER));
      if (!Number.isFinite(fetchedAt) || this.now() - fetchedAt >= maxAgeMs) {
        await response.body?.cancel();
        return undefined;
      }
      return { snapshot: (await response.json()) as PurgeSnapshot, fetchedAt };
    } catch {
      // A damaged or unreadable copy only costs a read of the object.
      return undefined;
    }
  }

  /**
   * Hands a copy to the other isolates of this data center; best effort, and at most one
   * put per isolate at a time and per copy: puts of one URL queue in the Cache API, and a
   * burst of them would hold up the page reads behind them.
   */
  private async share(snapshot: PurgeSnapshot, fetchedAt: number): Promise<void> {
    if (!this.dataCenter || this.sharing || fetchedAt <= this.sharedAt) return;
    this.sharing = true;
    this.sharedAt = fetchedAt;
    try {
      await this.put(snapshot, fetchedAt);
    } finally {
      this.sharing = false;
    }
  }

  private async put(snapshot: PurgeSnapshot, fetchedAt: number): Promise<void> {
    if (!this.dataCenter) return;
    const response = new Response(JSON.stringify(snapshot), {
      headers: {
        "content-type": "application/json",
        // The read instant decides validity; the physical lifetime only lets the copy go eventually.
        "cache-control": `max-age=${Math.ceil(this.propagationMs / 1_000) + 60}`,
        [READ_AT_HEADER]: String(fetchedAt),
      },
    });
    // Best effort, the cache's opening too: a failure answered a recorded purge 503 and dropped a fresh read of the list.
    await this.dataCenter()
      .then((cache) => cache.put(PURGE_LIST_URL, response))
      .catch(() => undefined);
  }

  private stub() {
    return this.namespace.get(this.namespace.idFromName("global"));
  }
}
