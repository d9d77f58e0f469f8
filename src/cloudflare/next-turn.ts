/**
 * Resolves in a timer: for work a request leaves behind its answer (the near tier's Cache API
 * write, a stats report), started there rather than at once. workerd wakes a request that
 * awaits a promise another request resolved (the waiters of this isolate's flight, when its
 * answer lands) only once its event loop has nothing else queued, and every step of a Cache
 * API write or a Durable Object call queues more: started with the answer, they held a cold
 * key's waiters back by tens of milliseconds under a spike (bench/README.md, "The cold key's
 * first wave"). A timer fires at the same idle point as those wake-ups, not before them.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
