// Several OpenID Providers in a real browser (Chromium) against two dev IdPs: the chooser, signing in
// with partners, a corp-only route sending the browser to corp (API: 401), signing in with corp
// replacing the partners session, and `?provider=` skipping the chooser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, signInAtDevIdp } from '../helpers/chromium.js';
import { identityHeader } from '../interop/pages.js';
import { startTwoProviders } from '../helpers/providers.js';

const ALICE = { user: 'alice', password: 'alice-password' };
const BOB = { user: 'bob', password: 'bob-password' };

test('two providers in Chromium: chooser, partners session, corp-only route → corp, corp sign-in replaces it', { timeout: 60_000 }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const s = await startTwoProviders(t);
  const page = await context.newPage();
  const api = async (path: string) => (await page.request.get(`${s.url}${path}`, { headers: { accept: 'application/json' }, maxRedirects: 0 })).status();

  // A route for both: the chooser, with both providers.
  await page.goto(`${s.url}/both/page?q=1`, { waitUntil: 'domcontentloaded' });
  assert.equal(new URL(page.url()).pathname, '/oauth2/start', 'the chooser');
  assert.equal(await page.getByRole('link', { name: 'Example Corp staff' }).count(), 1);
  assert.match(await page.locator('body').innerText(), /corp\.example/);
  await Promise.all([page.waitForURL((u) => u.origin === s.partners.issuer), page.getByRole('link', { name: 'Partners' }).click()]);
  await signInAtDevIdp(page, ALICE);
  assert.equal(page.url(), `${s.url}/both/page?q=1`, 'back where it started');
  assert.equal(await identityHeader(page, 'x-forwarded-user'), 'alice');

  // A corp-only route: the partners session is no session there.
  assert.equal(await api('/corp/x'), 401, 'API request: 401');
  await page.goto(`${s.url}/corp/x`, { waitUntil: 'domcontentloaded' });
  assert.equal(new URL(page.url()).origin, s.corp.issuer, 'straight to corp\'s sign-in, no chooser');
  assert.equal(await api('/both/y'), 200, 'still signed in where partners is accepted');

  // Signing in with corp (as bob) replaces the partners session.
  await signInAtDevIdp(page, BOB);
  assert.equal(page.url(), `${s.url}/corp/x`);
  assert.equal(await identityHeader(page, 'x-forwarded-user'), 'bob');
  assert.equal(await api('/partners/x'), 401, 'the partners session is gone');
  await page.goto(`${s.url}/both/z`, { waitUntil: 'domcontentloaded' });
  assert.equal(await identityHeader(page, 'x-forwarded-user'), 'bob', 'one identity, never merged');

  // `?provider=` skips the chooser.
  await page.goto(`${s.url}/oauth2/start?provider=partners&rd=${encodeURIComponent(`${s.url}/partners/p`)}`, { waitUntil: 'domcontentloaded' });
  assert.notEqual(new URL(page.url()).pathname, '/oauth2/start');
});
