import { runInDurableObject } from "cloudflare:test";

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
