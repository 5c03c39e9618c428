// Moves Date.now() for the whole test process — the dev IdP and the proxy alike, so tokens' `exp`
// and the proxy's clock agree — by `advance(ms)`; restored after the test. Nothing sleeps.
import type { TestContext } from 'node:test';

export function processClock(t: TestContext) {
  const real = Date.now;
  let offset = 0;
  Date.now = () => real() + offset;
  t.after(() => { Date.now = real; });
  return { now: () => Date.now(), advance: (ms: number) => { offset += ms; }, elapsed: () => offset };
}
