import { ManualClock } from "../clock.ts";
import { MemoryStore } from "./memory-store.ts";
import { storeConformance } from "./store-conformance.ts";

storeConformance("memory", async () => {
  const clock = new ManualClock(1_700_000_000_000);
  return { clock, store: new MemoryStore(clock) };
});
