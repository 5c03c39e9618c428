// Interop suite against Glewlwyd: token refresh. A Glewlwyd of its own whose access and ID tokens live
// 60 s (the plugin-wide access-token-duration); its own file so it runs beside glewlwyd.test.ts.
// Run alone: `npm run test:interop`. Skips locally without Glewlwyd; fails with CI=true.
//
// Time: Portcullis decides when to refresh by its own clock, which this test injects and moves by
// hand — 1.4 token lifetimes in a few seconds instead of 84 s of waiting. Glewlwyd's clock stays
// real, so moving Portcullis's is a clock skew, and Portcullis (rightly) takes a token's expiry as
// the earlier of `expires_in` on its clock and the ID token's `exp` on the IdP's. A clock moved ahead
// would make every refreshed token look short-lived (its `exp` is a minute after the IdP's real
// now); so Portcullis's clock starts a minute BEHIND Glewlwyd's (accepted with clockTolerance: 2m)
// and is moved 84 s forward: at the first refresh (48 s) it is still 12 s behind, `expires_in` rules,
// and the second token's window is a clean 60 s on Portcullis's clock, as the first one's was. No
// check here needs a token's `exp` to pass at Glewlwyd: after a refresh nothing presents the old
// token to it again (refresh tokens roll). Several lifetimes with both clocks moved together are
// covered against the dev IdP in test/session/refresh-timing.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { APIResponse } from 'playwright-core';
import { launchChromium } from '../helpers/chromium.js';
import { until } from '../helpers/wait.js';
import { ALICE } from './idp.js';
import { missingGlewlwydReason, startGlewlwyd, type Glewlwyd } from './glewlwyd.js';
import { startInteropStack } from './portcullis.js';

const skip = missingGlewlwydReason();

describe('Glewlwyd interop: refresh with 60 s tokens', { skip }, () => {
  const LIFETIME_S = 60;
  /** 20 % of a 60 s lifetime (session/refresh.ts refreshMargin): due 48 s after issue. */
  const DUE_AFTER_S = 48;
  const STEP_S = 2;
  let idp: Glewlwyd;
  before(async () => { idp = await startGlewlwyd({ accessTokenLifetimeSec: LIFETIME_S }); });
  after(async () => { await idp?.stop(); });

  test('a session outlives its 60 s tokens through refresh, with at most one refresh per lifetime window', { timeout: 120_000 }, async (t) => {
    const context = await launchChromium(t);
    if (!context) return;
    // Portcullis's clock stands still unless moved; it starts a minute behind Glewlwyd's (see above).
    const start = Date.now() - 60_000;
    let elapsedMs = 0;
    const s = await startInteropStack(t, idp, {
      clientId: 'refresh',
      now: () => start + elapsedMs,
      edit: (raw) => { (raw.oidc as Record<string, unknown>).clockTolerance = '2m'; },
    });
    const page = await context.newPage();
    await page.goto(`${s.url}/start`, { waitUntil: 'domcontentloaded' });
    await idp.signIn(page, ALICE);
    assert.equal(page.url(), `${s.url}/start`);
    // Glewlwyd logs one "Access token generated for client 'refresh'" per code exchange and per refresh.
    const issued = (): number => idp.log().split('\n').filter((l) => l.includes("Access token generated for client 'refresh'")).length;
    assert.equal(issued(), 1, 'one access token from the code exchange');

    // With the browser's cookie jar (a refresh's new cookie is kept).
    const tick = async (n: number): Promise<void> => {
      const res: APIResponse = await context.request.get(`${s.url}/tick?n=${n}`, { headers: { accept: 'application/json' }, maxRedirects: 0 });
      assert.equal(res.status(), 200, `request ${n} at ${elapsedMs / 1000} s: ${res.status()} ${(await res.text()).slice(0, 300)}`);
      assert.equal(s.upstream.requests.at(-1)?.headers['x-forwarded-preferred-username'], 'alice');
    };
    // A request every 2 s of Portcullis's time until 1.4 lifetimes have passed; at the due point a
    // burst of four at once (they share one refresh).
    // Refreshes counted twice: by Portcullis (its metric, settled when the request is answered) and
    // by Glewlwyd (its log, read asynchronously).
    const refreshed = async (): Promise<number> => (await s.server.runtime.metrics.refresh.get()).values.find((v) => v.labels.result === 'success')?.value ?? 0;
    let requests = 0;
    let refreshedAtS: number | undefined;
    while (elapsedMs < LIFETIME_S * 1400) {
      elapsedMs += STEP_S * 1000;
      const burst = elapsedMs === DUE_AFTER_S * 1000 ? 4 : 1;
      await Promise.all(Array.from({ length: burst }, () => tick(requests++)));
      if (refreshedAtS === undefined && await refreshed() > 0) refreshedAtS = elapsedMs / 1000;
    }
    const refreshes = await refreshed();
    t.diagnostic(`${requests} requests over ${elapsedMs / 1000} s of Portcullis's clock, ${refreshes} refresh(es), the first at ${refreshedAtS} s`);
    assert.equal(refreshedAtS, DUE_AFTER_S, 'not refreshed while far from expiry (a 60 s token is not due all its life); refreshed once due, before it expired');
    // Past 60 s the session lives on the refreshed token; that one is due at 96 s, after this test's 84 s.
    assert.equal(refreshes, 1, `one refresh per 60 s lifetime window, not one per request: ${refreshes} refreshes for ${requests} requests`);
    await until('Glewlwyd to log the refresh', 5_000, async () => issued() === 2);
    assert.equal(issued(), 2, 'Glewlwyd issued one access token for the code and one for the refresh');
  });
});
