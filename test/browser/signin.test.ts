// Real browser (Debian Chromium via playwright-core) through the whole stack: sign-in at the dev IdP's
// pages, the 403 page and its sign-out, and two tabs signing in at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Page, Response } from 'playwright-core';
import { startStack } from '../helpers/stack.js';
import { launchChromium, recordNavigations, signInAtDevIdp } from '../helpers/chromium.js';
import { identityHeader } from '../interop/pages.js';

const ALICE = { user: 'alice', password: 'alice-password' };
const BOB = { user: 'bob', password: 'bob-password' };

/** Every test is bounded: a hung browser or server fails the test instead of the suite timeout. */
const TEST_TIMEOUT_MS = 30_000;

test('alice signs in at the IdP\'s login page and is back at the original URL as herself', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const s = await startStack(t);
  const page = await context.newPage();

  await page.goto(`${s.url}/somewhere?q=1`, { waitUntil: 'domcontentloaded' });
  assert.equal(new URL(page.url()).origin, s.idp.issuer, 'sent to the IdP');
  await assert.doesNotReject(page.locator('input[name="login"]').waitFor(), 'the IdP shows its login form');

  await signInAtDevIdp(page, ALICE);

  assert.equal(page.url(), `${s.url}/somewhere?q=1`, 'back at the original URL, query string included');
  assert.equal(await page.locator('h1').innerText(), 'Portcullis demo upstream');
  assert.equal(await identityHeader(page, 'x-forwarded-user'), 'alice');
  assert.equal(await identityHeader(page, 'x-forwarded-email'), 'alice@example.com');
  assert.equal(await identityHeader(page, 'x-forwarded-preferred-username'), 'alice');
  assert.equal(await identityHeader(page, 'x-forwarded-groups'), 'admin,dev');
  assert.match(await page.locator('body').innerText(), /GET \/somewhere\?q=1/, 'the upstream saw the original path');

  const cookies = await context.cookies(s.url);
  const session = cookies.find((c) => c.name === 'portcullis');
  assert.ok(session, `a session cookie is set (have ${cookies.map((c) => c.name).join(', ')})`);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');
  assert.ok(!cookies.some((c) => c.name.startsWith('portcullis_txn')), 'the transaction cookie is gone after the callback');
});

test('bob gets the 403 page on /admin; its sign-out link ends the session', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const s = await startStack(t);
  const page = await context.newPage();
  const hops = recordNavigations(page);

  await page.goto(`${s.url}/admin`, { waitUntil: 'domcontentloaded' });
  await signInAtDevIdp(page, BOB);
  assert.equal(page.url(), `${s.url}/admin`);
  assert.equal(hops.at(-1)?.status, 403);
  const body = await page.locator('body').innerText();
  assert.match(body, /You don't have access to this page/);
  assert.match(body, /bob@example\.com/, 'the page says who is signed in');
  assert.equal(s.upstream.requests.filter((r) => r.url.startsWith('/admin')).length, 0, 'the upstream never saw /admin');

  // 403 page → GET confirm page → POST → IdP's own sign-out confirmation → signed out.
  await Promise.all([page.waitForURL(/\/oauth2\/sign_out/), page.getByRole('link', { name: /Sign out/ }).click()]);
  assert.match(await page.locator('h1').innerText(), /Sign out\?/);
  assert.match(await page.locator('body').innerText(), /bob@example\.com/);
  await Promise.all([
    page.waitForURL((u) => u.pathname !== '/oauth2/sign_out', { waitUntil: 'domcontentloaded' }),
    page.getByRole('button', { name: 'Sign out' }).click(),
  ]);
  assert.ok(!(await context.cookies(s.url)).some((c) => c.name === 'portcullis'), 'the session cookie is cleared');
  // RP-initiated logout (the dev IdP offers end_session_endpoint): it asks before ending its own session, then sends us back.
  assert.equal(new URL(page.url()).origin, s.idp.issuer, 'RP-initiated logout at the IdP');
  await Promise.all([
    page.waitForURL((u) => u.origin === s.url, { waitUntil: 'domcontentloaded' }),
    page.getByRole('button', { name: 'Sign out' }).click(),
  ]);
  assert.equal(new URL(page.url()).pathname, '/oauth2/signed_out');
  assert.match(await page.locator('h1').innerText(), /signed out/i);

  // Reload of / now goes back to the IdP, which asks for a password again (its session ended too).
  hops.length = 0;
  await page.goto(`${s.url}/`, { waitUntil: 'domcontentloaded' });
  assert.deepEqual(hops[0], { status: 302, url: `${s.url}/` }, `the proxy redirects: ${JSON.stringify(hops)}`);
  assert.equal(new URL(page.url()).origin, s.idp.issuer, 'back at the IdP');
  await assert.doesNotReject(page.locator('input[name="login"]').waitFor(), 'the IdP asks for credentials again');
});

test('two tabs sign in at the same time and each ends at its own URL', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const s = await startStack(t);
  const [tabA, tabB] = await Promise.all([context.newPage(), context.newPage()]);

  // Both tabs start a sign-in before either finishes: two transactions in flight in one cookie jar.
  await Promise.all([
    tabA.goto(`${s.url}/tab-a?n=1`, { waitUntil: 'domcontentloaded' }),
    tabB.goto(`${s.url}/tab-b?n=2`, { waitUntil: 'domcontentloaded' }),
  ]);
  for (const tab of [tabA, tabB]) await tab.locator('input[name="login"]').waitFor();
  await Promise.all([signInAtDevIdp(tabA, ALICE), signInAtDevIdp(tabB, ALICE)]);

  assert.equal(tabA.url(), `${s.url}/tab-a?n=1`);
  assert.equal(tabB.url(), `${s.url}/tab-b?n=2`);
  assert.equal(await identityHeader(tabA, 'x-forwarded-user'), 'alice');
  assert.equal(await identityHeader(tabB, 'x-forwarded-user'), 'alice');
  assert.ok(!(await context.cookies(s.url)).some((c) => c.name.startsWith('portcullis_txn')), 'no transaction cookie left behind');
});
