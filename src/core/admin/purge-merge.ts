import { bounded, markOf, prune, setMark, type PurgeMark, type PurgeSnapshot } from "./purge.ts";

/**
 * Two purge lists as one: per URL key, per tag and for everything the newest mark of the two
 * (as `recordPurge` leaves a target purged twice: the later purge replaces the earlier),
 * URL and tag marks older than the newest purge of everything dropped (it replaced them),
 * then pruned and bounded as a recorded list is. Used when a shared list and a copy of it
 * have drifted apart (a store that lost its last writes while another purge was written):
 * neither side's purges are lost.
 */
export function mergePurges(a: PurgeSnapshot, b: PurgeSnapshot, now: number, retainMs: number): PurgeSnapshot {
  const all = newer(a.all, b.all);
  const union = (x: Record<string, PurgeMark>, y: Record<string, PurgeMark>) => {
    const out: Record<string, PurgeMark> = {};
    for (const marks of [x, y])
      for (const [name, mark] of Object.entries(marks)) {
        const kept = newer(markOf(out, name), mark)!;
        if (!all || kept.at >= all.at) setMark(out, name, kept);
      }
    return out;
  };
  const merged: PurgeSnapshot = {
    v: 1,
    keys: union(a.keys, b.keys),
    tags: union(a.tags, b.tags),
    ...(all ? { all } : {}),
  };
  return bounded(prune(merged, now - retainMs));
}

/**
 * Whether `list` already honours every mark of `marks` made at or after `since` (older ones
 * are pruned anyway): merging `marks` into it would add nothing. A mark is honoured by the
 * same target's mark at a later instant, or at the same instant unless that one is soft and
 * this one hard, or by a purge of everything made after it.
 */
export function coversPurges(list: PurgeSnapshot, marks: PurgeSnapshot, since: number): boolean {
  const holds = (have: PurgeMark | undefined, mark: PurgeMark) =>
    have !== undefined && (have.at > mark.at || (have.at === mark.at && (mark.soft || !have.soft)));
  const covered = (mark: PurgeMark, have: PurgeMark | undefined) =>
    mark.at < since || holds(have, mark) || (list.all !== undefined && list.all.at > mark.at);
  return (
    (marks.all === undefined || marks.all.at < since || holds(list.all, marks.all)) &&
    Object.entries(marks.keys).every(([name, mark]) => covered(mark, markOf(list.keys, name))) &&
    Object.entries(marks.tags).every(([name, mark]) => covered(mark, markOf(list.tags, name)))
  );
}

/** The later of two marks; at the same instant, hard if either is. */
function newer(a: PurgeMark | undefined, b: PurgeMark | undefined): PurgeMark | undefined {
  if (!a || !b) return a ?? b;
  if (a.at !== b.at) return a.at > b.at ? a : b;
  return { at: a.at, soft: a.soft && b.soft };
}

/**
 * `value` as a purge list, or undefined when it is not one this herdless reads: another shape
 * (a later format in a rolling deploy), a hand edit, another app's data under the list's name.
 * A shared list is anyone's: one read as it was (`{}`, no `keys`) failed every hit with a
 * `500` in every process that took it, and kept failing after it was mended (the next read
 * compared the good list with the broken copy, and threw).
 */
export function readablePurges(value: unknown): PurgeSnapshot | undefined {
  if (!isRecord(value) || value["v"] !== 1) return undefined;
  const { all, keys, tags } = value;
  if (all !== undefined && !isMark(all)) return undefined;
  if (!isRecord(keys) || !isRecord(tags)) return undefined;
  if (!Object.values(keys).every(isMark) || !Object.values(tags).every(isMark)) return undefined;
  return value as unknown as PurgeSnapshot;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isMark(value: unknown): value is PurgeMark {
  return isRecord(value) && Number.isFinite(value["at"]) && typeof value["soft"] === "boolean";
}
