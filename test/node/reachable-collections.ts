import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** A Map, Set or array reachable from a root object, named by the path that reached it. */
export interface Collection {
  path: string;
  size: number;
}

/**
 * Every Map, Set and array reachable from `root` through own properties (private fields of
 * classes included: TypeScript's `private` is an ordinary property), Map keys and values,
 * Set members and array elements, each visited once. What it cannot see: variables a
 * closure captured and module-level constants; WeakMaps hold nothing alive, so they are
 * not counted. Binary data is not walked into.
 *
 * The memory-bound test uses it to find any per-key structure that grows with a URL flood,
 * whatever it is called and wherever it is added, instead of a list of known ones.
 */
export function reachableCollections(root: object, rootName = "root"): Collection[] {
  const found: Collection[] = [];
  const seen = new Set<object>();
  const queue: { value: object; path: string }[] = [{ value: root, path: rootName }];
  const visit = (value: unknown, path: string): void => {
    if ((typeof value !== "object" && typeof value !== "function") || value === null) return;
    if (seen.has(value) || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return;
    seen.add(value);
    queue.push({ value, path });
  };
  for (let next = queue.shift(); next; next = queue.shift()) {
    const { value, path } = next;
    if (value instanceof Map) {
      found.push({ path, size: value.size });
      let i = 0;
      for (const [k, v] of value) {
        visit(k, `${path}.key[${i}]`);
        visit(v, `${path}.get[${i++}]`);
      }
      continue;
    }
    if (value instanceof Set) {
      found.push({ path, size: value.size });
      let i = 0;
      for (const member of value) visit(member, `${path}[${i++}]`);
      continue;
    }
    if (Array.isArray(value)) found.push({ path, size: value.length });
    for (const name of Object.getOwnPropertyNames(value)) {
      const descriptor = Object.getOwnPropertyDescriptor(value, name);
      // Getters are not called: reading one may compute or allocate, and it holds nothing of its own.
      if (descriptor && "value" in descriptor) visit(descriptor.value, `${path}.${name}`);
    }
  }
  return found;
}

/**
 * Retained memory (V8 heap + ArrayBuffer backing stores, where the bodies live) can only
 * be read after a full collection: without one, the 50k evicted entries still sit in the
 * heap, and the reading swings between ~90 and ~185 MiB with GC timing (measured). So use
 * the exposed `gc` when the runner has one, else expose it for this process.
 */
export function findGc(): (() => void) | undefined {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  try {
    setFlagsFromString("--expose-gc");
    return runInNewContext("gc") as () => void;
  } catch {
    return undefined;
  }
}

/** A full GC, then a turn of the loop so freed ArrayBuffer backing stores are released, then another. */
export async function settle(gc: () => void): Promise<void> {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 50));
  gc();
}
