/**
 * Waiting on a condition, never on a duration: polls `probe` every 20 ms until it returns a truthy
 * value (which it returns), or throws naming `what` after `timeoutMs` (default 30 s: an upper bound
 * for a loaded machine, not an expectation of speed).
 */
export async function until<T>(what: string, probe: () => T | Promise<T>, timeoutMs = 30_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Polls `get` every 100 ms until `ok` accepts its value, and returns that value; after `timeoutMs`
 * (default 60 s) throws naming `what` and showing the last value, which says how far it got.
 */
export async function untilValue<T>(
  get: () => Promise<T>,
  ok: (v: T) => boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}: ${JSON.stringify(v).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
