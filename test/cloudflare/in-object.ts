import { runInDurableObject } from "cloudflare:test";
import { onTestFinished } from "vitest";

/**
 * `runInDurableObject` for herdless's objects. Each object class declares only the bindings
 * it reads (`DurableObject<ConfigEnv>`, not the Worker's whole `Env`), which the pool's
 * signature cannot infer through; the instance is the stub's class all the same.
 */
export function inObject<O, R>(
  stub: DurableObjectStub<O & Rpc.DurableObjectBranded>,
  callback: (instance: O, state: DurableObjectState) => R | Promise<R>,
): Promise<R> {
  return runInDurableObject(stub as unknown as DurableObjectStub, (instance, state) =>
    callback(instance as unknown as O, state),
  );
}

/** How often a held object's open request looks whether its test is over. */
const HOLD_POLL_MS = 100;

/**
 * Runs `configure` in the object (a test hook: config, clock, guard name) and keeps the
 * object in memory until the current test ends, so what the hook gave it stays.
 *
 * workerd evicts an object that has had no request for 10 s, and the rebuilt object has
 * only what its env and storage give it. On a loaded machine a test's setup can leave an
 * object idle that long: scale-simulation's guard object came back with the default cap of
 * 8 and let 8 calls reach an origin the test had capped at 4. One open request per object
 * holds it; the request ends with the test. An object evicted on purpose
 * (`abortAllDurableObjects`) ends its hold: configure it again after.
 */
export async function configureForTest<O>(
  stub: DurableObjectStub<O & Rpc.DurableObjectBranded>,
  configure: (instance: O) => void,
): Promise<void> {
  await inObject(stub, configure);
  let testOver = false;
  const held = inObject(stub, async () => {
    while (!testOver) await new Promise((resolve) => setTimeout(resolve, HOLD_POLL_MS));
  }).catch(() => undefined);
  onTestFinished(async () => {
    testOver = true;
    await held;
  });
}
