// Interop suite against Glewlwyd: token refresh. A Glewlwyd of its own whose access and ID tokens live
// 60 s (the plugin-wide access-token-duration); its own file so it runs beside glewlwyd.test.ts.
// Run alone: `npm run test:interop`. Skips locally without Glewlwyd; fails with CI=true.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { APIResponse } from 'playwright-core';
import { launchChromium } from '../helpers/chromium.js';
import { ALICE } from './idp.js';
import { missingGlewlwydReason, startGlewlwyd, type Glewlwyd } from './glewlwyd.js';
import { startInteropStack } from './portcullis.js';

const skip = missingGlewlwydReason();

describe('Glewlwyd interop: refresh with 60 s tokens', { skip }, () => {
  const LIFETIME_S = 60;
  let idp: Glewlwyd;
  before(async () => { idp = await startGlewlwyd({ accessTokenLifetimeSec: LIFETIME_S }); });
  after(async () => { await idp?.stop(); });

  test('a session outlives its 60 s tokens through refresh, with at most one refresh per lifetime window', { timeout: 150_000 }, async (t) => {
    const context = await launchChromium(t);
    if (!context) return;
    const s = await startInteropStack(t, idp, { clientId: 'refresh' });
    const page = await context.newPage();
    await page.goto(`${s.url}/start`, { waitUntil: 'domcontentloaded' });
    await idp.signIn(page, ALICE);
    assert.equal(page.url(), `${s.url}/start`);
    const signedInAt = Date.now();
    // Glewlwyd logs one "Access token generated for client 'refresh'" per code exchange and per refresh.
    const issued = (): number => idp.log().split('\n').filter((l) => l.includes("Access token generated for client 'refresh'")).length;
    assert.equal(issued(), 1, 'one access token from the code exchange');

    // Requests every 2 s, with the browser's cookie jar (a refresh's new cookie is kept), until 1.4 lifetimes have passed.
    const runForMs = LIFETIME_S * 1400;
    let requests = 0;
    while (Date.now() - signedInAt < runForMs) {
      const res: APIResponse = await context.request.get(`${s.url}/tick?n=${requests}`, { headers: { accept: 'application/json' }, maxRedirects: 0 });
      assert.equal(res.status(), 200, `request ${requests} at ${Math.round((Date.now() - signedInAt) / 1000)} s: ${res.status()} ${(await res.text()).slice(0, 300)}`);
      assert.equal(s.upstream.requests.at(-1)?.headers['x-forwarded-preferred-username'], 'alice');
      requests++;
      await new Promise((r) => setTimeout(r, 2_000));
    }
    const refreshes = issued() - 1;
    t.diagnostic(`${requests} requests over ${Math.round((Date.now() - signedInAt) / 1000)} s, ${refreshes} refresh(es)`);
    assert.ok(refreshes >= 1, 'the session was refreshed: it is still signed in after its first token expired');
    // 1.4 lifetimes: the first token is refreshed once near its end; its successor is not yet due.
    assert.ok(refreshes <= 2, `at most one refresh per 60 s lifetime window, not one per request: ${refreshes} refreshes for ${requests} requests`);
  });
});
