import type { Entry } from "../../core/http/entry.ts";
import type { Store } from "../../core/store/store.ts";
import type { Logger } from "../logger.ts";

/**
 * The shared tier as the engine reads it for the requests no fill answers (core
 * store/shared-look.ts: `only-if-cached`, a visitor's cookie request): not asked while Redis
 * is unhealthy, and a read that fails is a miss. Those requests were answered without Redis
 * before it held their copy (a relay, or a `504` for only-if-cached), so a Redis restart must
 * leave them answered so: the read rejected, and each got herdless's own `500`. A stalled
 * Redis holds such a read until its command timeout (`commandTimeoutMs`), as it holds a fill's.
 *
 * @example
 * const engine = new Engine({ …, near, shared: sharedReads(redisStore, connection, logger) });
 */
export function sharedReads(
  store: Pick<Store, "get">,
  connection: { readonly healthy: boolean },
  logger: Logger,
): Pick<Store, "get"> {
  return {
    get: async (key: string): Promise<Entry | undefined> => {
      if (!connection.healthy) return undefined;
      try {
        return await store.get(key);
      } catch (error) {
        logger.debug("shared copy not read", { key, error: String(error) });
        return undefined;
      }
    },
  };
}
