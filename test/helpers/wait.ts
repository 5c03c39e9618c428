// Test helper: wait for something that happens elsewhere (Redis reconnecting, a replica's sync),
// polling, bounded — never a fixed sleep standing in for it.

/** Resolves once `check` is true; rejects after `ms` naming `what`. */
export async function until(what: string, ms: number, check: () => boolean | Promise<boolean>, everyMs = 50): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}`);
}
