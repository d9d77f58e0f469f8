/**
 * `promise`'s value if it settles within `ms` (its rejection if it rejects), else
 * `settled: false`; the timer is cleared either way. It is a timer of the caller's own, too:
 * workerd does not take a request that waits on it for a hung one.
 *
 * @example
 * const joined = await withinMs(running, 1_000);
 * if (joined.settled) return joined.value;
 */
export async function withinMs<T>(
  promise: Promise<T>,
  ms: number,
): Promise<{ settled: true; value: T } | { settled: false }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<{ settled: false }>((resolve) => {
    timer = setTimeout(() => resolve({ settled: false }), ms);
  });
  try {
    return await Promise.race([promise.then((value) => ({ settled: true as const, value })), timeout]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
