import { canonicalUrl } from "../http/canonical-url.ts";
import { HerdlessError } from "../errors.ts";
import { routeFor, type Config } from "../config.ts";
import type { Entry } from "../http/entry.ts";
import { primaryKey } from "../http/key.ts";

/** One purge as an operator asks for it (POST /__herdless/purge). */
export type PurgeCommand = ({ urls: string[] } | { tags: string[] } | { all: true }) & { soft?: boolean };

/** When something was purged, and how. A later purge of the same target replaces an earlier one. */
export interface PurgeMark {
  at: number;
  soft: boolean;
}

/**
 * The purges an edge must honour, as a plain versioned object so it can be kept in a
 * Durable Object or Redis and copied to every edge. URLs are recorded by primary key.
 */
export interface PurgeSnapshot {
  v: 1;
  all?: PurgeMark;
  keys: Record<string, PurgeMark>;
  tags: Record<string, PurgeMark>;
}

export const emptyPurges = (): PurgeSnapshot => ({ v: 1, keys: {}, tags: {} });

/** What a purge does to one stored entry. */
export type PurgeVerdict = "keep" | "soft" | "hard";

/**
 * Whether `entry` (stored under `primary`) predates a purge that covers it. A hard purge
 * anywhere wins over a soft one; entries asked of the origin after every matching purge are
 * kept. `at` is the earliest covering soft purge: the entry counts as stale from then.
 */
export function purgeVerdict(entry: PurgeFacts, primary: string, purges: PurgeSnapshot): PurgeVerdict {
  return coveringPurge(entry, primary, purges).verdict;
}

/** What a purge is judged on: when the origin was asked for the copy, and its tags. */
type PurgeFacts = Pick<Entry, "requestAt" | "tags">;

function coveringPurge(
  entry: PurgeFacts,
  primary: string,
  purges: PurgeSnapshot,
): { verdict: PurgeVerdict; at: number } {
  let verdict: PurgeVerdict = "keep";
  let at = Infinity;
  const consider = (mark: PurgeMark | undefined) => {
    // By when the origin was asked, not when it answered: a fill sent before the purge may
    // bring the page as it was before it (the origin changed it, then the operator purged).
    // Judged by its arrival, that answer was stored after the purge and served as a hit for
    // its whole lifetime, though the purge had returned (attack tests: security-purge, edge-purge).
    if (!mark || entry.requestAt > mark.at) return;
    if (!mark.soft) verdict = "hard";
    else if (verdict === "keep") verdict = "soft";
    at = Math.min(at, mark.at);
  };
  consider(purges.all);
  consider(markOf(purges.keys, primary));
  for (const tag of entry.tags) consider(markOf(purges.tags, tag));
  return { verdict, at };
}

/**
 * The mark `marks` holds for `name` itself. The tags are the origin's words (`Cache-Tag`,
 * `Surrogate-Key`), and a plain object also answers `constructor`, `toString` or `__proto__`
 * from its prototype: a page tagged `constructor` read as purged on every request, never a
 * hit, each request one more origin request (a blog tag, a search term the origin tags by).
 */
export function markOf(marks: Record<string, PurgeMark>, name: string): PurgeMark | undefined {
  return Object.hasOwn(marks, name) ? marks[name] : undefined;
}

/** Sets `name`'s mark as an own field: `marks["__proto__"] = mark` would set the prototype, the purge lost. */
export function setMark(marks: Record<string, PurgeMark>, name: string, mark: PurgeMark): void {
  Object.defineProperty(marks, name, { value: mark, enumerable: true, writable: true, configurable: true });
}

/**
 * The entry as a purge leaves it: gone (hard), or stale since the purge and servable stale
 * while one revalidation runs (soft; never for must-revalidate entries, which just become
 * stale). Stale from the purge's instant, not from "now", so every reader agrees however
 * its clock has moved since.
 */
export function applyPurge(entry: Entry | undefined, primary: string, purges: PurgeSnapshot): Entry | undefined {
  if (!entry) return undefined;
  const { verdict, at } = coveringPurge(entry, primary, purges);
  if (verdict === "keep") return entry;
  if (verdict === "hard") return undefined;
  const staleAt = Math.min(entry.staleAt, at);
  return { ...entry, staleAt, swrUntil: entry.mustRevalidate ? staleAt : Math.max(entry.swrUntil, entry.deleteAt) };
}

/** Records a purge in a snapshot (returns a new one); `keysOf` maps a purge URL to the primary keys it names. */
export function recordPurge(
  snapshot: PurgeSnapshot,
  command: PurgeCommand,
  keysOf: (url: string) => readonly string[],
  now: number,
  retainMs: number,
): PurgeSnapshot {
  const mark: PurgeMark = { at: now, soft: command.soft === true };
  const next: PurgeSnapshot = {
    v: 1,
    keys: { ...snapshot.keys },
    tags: { ...snapshot.tags },
    ...(snapshot.all ? { all: snapshot.all } : {}),
  };
  if ("all" in command) {
    next.all = mark;
    // Everything stored before now is covered: older per-key and per-tag marks say nothing more.
    next.keys = {};
    next.tags = {};
  } else if ("urls" in command) {
    for (const url of command.urls) for (const key of keysOf(url)) setMark(next.keys, key, mark);
  } else {
    for (const tag of command.tags) setMark(next.tags, tag, mark);
  }
  return bounded(prune(next, now - retainMs));
}

/**
 * The most the purge list may weigh: the names' characters plus {@link MARK_WEIGHT} per mark
 * (~10,000 marks of a 60-character URL). Every edge copies the whole list about once per
 * `admin.purgePropagationMs`, and a Durable Object keeps it as one value (at most 2 MB): a
 * deployment that purged ~40,000 URLs within {@link PURGE_RETAIN_MS} had every further purge
 * fail (`SQLITE_TOOBIG`) for a month.
 */
export const PURGE_LIST_MAX_WEIGHT = 1_000_000;
/** What a mark costs beyond its name, as the list is encoded (`"…":{"at":…,"soft":false},`). */
const MARK_WEIGHT = 32;

/**
 * The list within {@link PURGE_LIST_MAX_WEIGHT}: past it the oldest URL and tag marks are
 * folded into the purge of everything (`all`) at the newest folded instant, so what they
 * purged stays purged (with whatever else was stored before that instant: a revalidation
 * more, never a purged copy served). The fold is soft only when every mark it takes is.
 */
export function bounded(snapshot: PurgeSnapshot): PurgeSnapshot {
  const marks = [
    ...Object.entries(snapshot.keys).map(([name, mark]) => ({ name, mark, tag: false })),
    ...Object.entries(snapshot.tags).map(([name, mark]) => ({ name, mark, tag: true })),
  ];
  let weight = 0;
  for (const { name } of marks) weight += name.length + MARK_WEIGHT;
  if (weight <= PURGE_LIST_MAX_WEIGHT) return snapshot;
  marks.sort((a, b) => a.mark.at - b.mark.at);
  let foldAt = -Infinity;
  let folded = 0;
  while (folded < marks.length && (weight > PURGE_LIST_MAX_WEIGHT || marks[folded]!.mark.at <= foldAt)) {
    const { name, mark } = marks[folded++]!;
    weight -= name.length + MARK_WEIGHT;
    foldAt = mark.at;
  }
  const taken = marks.slice(0, folded);
  const all: PurgeMark = {
    at: Math.max(foldAt, snapshot.all?.at ?? -Infinity),
    soft: (snapshot.all?.soft ?? true) && taken.every(({ mark }) => mark.soft),
  };
  const kept = marks.slice(folded);
  return {
    v: 1,
    all,
    keys: Object.fromEntries(kept.filter((m) => !m.tag).map((m) => [m.name, m.mark])),
    tags: Object.fromEntries(kept.filter((m) => m.tag).map((m) => [m.name, m.mark])),
  };
}

/** Marks older than every entry still stored cover nothing; dropping them bounds the snapshot. */
export function prune(snapshot: PurgeSnapshot, before: number): PurgeSnapshot {
  const keep = (marks: Record<string, PurgeMark>) =>
    Object.fromEntries(Object.entries(marks).filter(([, m]) => m.at >= before));
  return { ...snapshot, keys: keep(snapshot.keys), tags: keep(snapshot.tags) };
}

/**
 * Validates a purge request body; throws an Error whose message says what is wrong and
 * what is accepted.
 */
export function parsePurgeCommand(body: unknown): PurgeCommand {
  const accepted =
    'accepted: {"urls": ["https://…"]}, {"tags": ["…"]} or {"all": true}, each with optional "soft": true';
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new Error(`purge body must be a JSON object; ${accepted}`);
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !["urls", "tags", "all", "soft"].includes(k));
  if (unknown.length) throw new Error(`unknown purge field ${unknown.map((k) => `"${k}"`).join(", ")}; ${accepted}`);
  if (b.soft !== undefined && typeof b.soft !== "boolean") throw new Error(`"soft" must be true or false; ${accepted}`);
  const soft = b.soft === true;
  const forms = ["urls", "tags", "all"].filter((k) => b[k] !== undefined);
  if (forms.length !== 1) throw new Error(`give exactly one of "urls", "tags", "all"; ${accepted}`);
  if (b.all !== undefined) {
    if (b.all !== true) throw new Error(`"all" must be true; ${accepted}`);
    return { all: true, soft };
  }
  const field = forms[0] as "urls" | "tags";
  const list = b[field];
  if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === "string" && x.length > 0)) {
    throw new Error(`"${field}" must be a non-empty array of strings; ${accepted}`);
  }
  if (field === "urls") {
    for (const url of list as string[]) {
      if (!URL.canParse(url))
        throw new Error(
          `"${url}" is not an absolute URL; purge URLs as clients request them, e.g. https://example.com/page`,
        );
      // No page is stored under another scheme: `mailto:` purged nothing with a 200, and
      // Node's canonical key read `ftp://h/x` as `https://h/x`.
      const scheme = new URL(url).protocol;
      if (scheme !== "http:" && scheme !== "https:")
        throw new Error(
          `"${url}" is not an http(s) URL (scheme ${scheme}); purge URLs as clients request them, e.g. https://example.com/page`,
        );
    }
    return { urls: list as string[], soft };
  }
  return { tags: list as string[], soft };
}

/** Where purges are kept: in memory for one process, a Durable Object or Redis for many edges. */
export interface PurgeRegistry {
  /** The snapshot an edge checks entries against; at most the registry's propagation bound old. */
  current(): PurgeSnapshot | Promise<PurgeSnapshot>;
  /** Records a purge; resolves once every edge honours it (else rejects, with {@link PurgeUnconfirmedError} once recorded). */
  purge(command: PurgeCommand): Promise<void>;
}

/**
 * A purge that is recorded but not known to be honoured everywhere: some processes of the
 * fleet had not read it when the purger stopped waiting (they may still serve what it
 * purged), or the shared list could not be asked who had. The operator tries again.
 */
export class PurgeUnconfirmedError extends HerdlessError {
  constructor(
    message: string,
    /** The processes seen not to hold it; undefined when they could not be asked. */
    readonly unconfirmed: readonly string[] | undefined,
  ) {
    super("PURGE_UNCONFIRMED", message);
  }
}

/** Purge marks are kept this long; entries older than that have long been revalidated or dropped. */
export const PURGE_RETAIN_MS = 30 * 24 * 3600_000;

/**
 * The registry of one process: purges take effect at once.
 *
 * @example
 * const purges = new LocalPurgeRegistry(clock, (url) => primaryKey(new URL(url), keyOptions));
 * await purges.purge({ tags: ["product-42"], soft: true });
 */
export class LocalPurgeRegistry implements PurgeRegistry {
  private snapshot = emptyPurges();
  constructor(
    private readonly clock: { now(): number },
    private readonly keyOf: (url: string) => readonly string[],
  ) {}

  /** The snapshot, always in force: purges take effect at once in one process. */
  copy(): PurgeSnapshot {
    return this.snapshot;
  }

  current(): PurgeSnapshot {
    return this.snapshot;
  }

  async purge(command: PurgeCommand): Promise<void> {
    this.snapshot = recordPurge(this.snapshot, command, this.keyOf, this.clock.now(), PURGE_RETAIN_MS);
    // Entries count as purged when asked of the origin at or before the mark: return only once
    // the clock has moved past it, so whatever is asked for after the purge returns is kept.
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/**
 * Maps a purge URL to the primary keys it is stored under, with the route's key options.
 * `anyScheme`: the page under either scheme, whichever the URL names. A Node server keys a
 * request by the scheme its proxy in front reports (`origin.trustForwardedProto`) or by
 * `http:` when it is not trusted to, and an operator purges the URL its clients see.
 */
export function purgeKeyOf(config: Config, anyScheme = false): (url: string) => readonly string[] {
  return (url) => {
    // Spelled as requests are keyed (`/%70age` is `/page`): every stored spelling goes.
    const parsed = canonicalUrl(new URL(url));
    // The scheme does not change the path, so one route's key options serve both keys.
    const options = routeFor(config, parsed.pathname).key;
    const key = primaryKey(parsed, options);
    if (!anyScheme) return [key];
    parsed.protocol = parsed.protocol === "https:" ? "http:" : "https:";
    return [key, primaryKey(parsed, options)];
  };
}
