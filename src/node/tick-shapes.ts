import { createHook } from "node:async_hooks";

/**
 * One of Node's own `process.nextTick` objects, held for the life of the thread (see
 * {@link keepTickShapes}); undefined until then, or where Node makes no such object.
 */
let kept: object | undefined;

/**
 * Keeps `process.nextTick` fast in this thread for good. Node makes every tick an object
 * literal with computed keys (`{ [async_id_symbol]: …, [trigger_async_id_symbol]: …,
 * callback, args }`), and V8 adds those keys through a feedback slot that remembers the
 * object's hidden classes. They are held by nothing but live ticks: a full collection while
 * no tick is pending (an idle moment, a quiet second of a server) frees them, the next tick
 * makes new ones, and after a few such collections the slot stops expecting any
 * (megamorphic): from then on every tick's keys go through V8's runtime
 * (`Runtime_DefineKeyedOwnPropertyInLiteral`, `MigrateToMap`), 0.3–0.7 µs per tick instead
 * of ~0.03. A request answers with several ticks (the write's `afterWrite`, the request's
 * end, the socket's resume), so a process that drew it paid ~3 µs per hit more, a tenth of
 * a hit's CPU (bench/README.md, "The Node hit path"), and which process drew it was chance.
 * One tick object held keeps its hidden classes alive, so the slot keeps seeing the same ones.
 * Taken through an `init` hook enabled for one `nextTick` call, then disabled. Idempotent
 * per thread (module state is per isolate: a worker thread keeps its own).
 *
 * @example
 * keepTickShapes(); // once, before serving
 */
export function keepTickShapes(): void {
  if (kept !== undefined) return;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === "TickObject") kept ??= resource as object;
    },
  });
  hook.enable();
  try {
    process.nextTick(noop);
  } finally {
    hook.disable();
  }
}

function noop(): void {}
