// Test helper: wait for something that happens elsewhere (Redis reconnecting, a replica's sync, a
// log line), polling, bounded — never a fixed sleep standing in for it. One polling loop for the suite.

/**
 * Polls `fn` until it returns a truthy value, and resolves with that value; rejects after `ms`
 * naming `what`. With `retryErrors`, an exception counts as "not yet" (the last one is reported on
 * timeout); without, it fails the wait at once.
 */
export async function waitFor<T>(fn: () => T | Promise<T>, ms = 10_000, what = 'condition', opts: { everyMs?: number; retryErrors?: boolean } = {}): Promise<T> {
  const { everyMs = 50, retryErrors = true } = opts;
  const t0 = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      if (!retryErrors) throw err;
      last = err;
    }
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Resolves once `check` is true; rejects after `ms` naming `what` (an exception from `check` fails at once). */
export async function until(what: string, ms: number, check: () => boolean | Promise<boolean>, everyMs = 50): Promise<void> {
  await waitFor(check, ms, what, { everyMs, retryErrors: false });
}
