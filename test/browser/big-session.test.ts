// Real browser (Debian Chromium via playwright-core): a user in 600 Active Directory groups signs in
// with the cookie store when the config reads only `groups` and `email` (issue 13, item 9), and a
// session that truly cannot fit gets a page saying why and what the operator can do — not a 502.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from '../helpers/stack.js';
import { launchChromium, signInAtDevIdp } from '../helpers/chromium.js';
import { identityHeader } from '../interop/pages.js';
import { adGroupNames, entraGroupIds } from '../session/ad-groups.js';
import { SESSION_VALUE_MAX } from '../../src/session/cookies.js';

const TEST_TIMEOUT_MS = 45_000;
const CAROL = { user: 'carol', password: 'carol-password' };

const ROUTES = [
  { name: 'finance', match: { path: '/finance' }, upstream: '{upstream}', allow: { claim: 'groups', contains: 'SG-Finance-Readers' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', allow: { claim: 'email', endsWith: '@example.com' } },
];

function carolWith(groups: string[]) {
  return { carol: { password: CAROL.password, claims: { email: 'carol@example.com', email_verified: true, name: 'Carol Example', preferred_username: 'carol', groups } } };
}

test('carol, in 600 AD groups, signs in with the cookie store and the groups rule lets her in', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const s = await startStack(t, { routes: ROUTES, idp: { users: carolWith([...adGroupNames(599), 'SG-Finance-Readers']) } });
  const page = await context.newPage();

  await page.goto(`${s.url}/finance/report`, { waitUntil: 'domcontentloaded' });
  assert.equal(new URL(page.url()).origin, s.idp.issuer, 'sent to the IdP');
  await signInAtDevIdp(page, CAROL);

  assert.equal(page.url(), `${s.url}/finance/report`, 'back at the page she asked for');
  assert.equal(await page.locator('h1').innerText(), 'Portcullis demo upstream');
  assert.equal(await identityHeader(page, 'x-forwarded-email'), 'carol@example.com');

  const cookies = (await context.cookies(s.url)).filter((c) => c.name === 'portcullis' || /^portcullis_\d+$/.test(c.name));
  const total = cookies.reduce((n, c) => n + c.value.length, 0);
  assert.ok(cookies.length >= 1 && total <= SESSION_VALUE_MAX, `session cookies ${cookies.map((c) => `${c.name}=${c.value.length}`).join(', ')}`);

  // The browser sends the whole (chunked) session back: a reload and another route still serve her.
  const again = await page.goto(`${s.url}/finance/other`, { waitUntil: 'domcontentloaded' });
  assert.equal(again?.status(), 200);
  const info = await page.goto(`${s.url}/oauth2/userinfo`);
  const body = JSON.parse(await info!.text()) as { groups: string[] };
  assert.equal(body.groups.length, 600);
});

test('a session that cannot fit: the browser shows a page saying why and what the operator can do', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const s = await startStack(t, { routes: ROUTES, idp: { users: carolWith(entraGroupIds(3000)) } });
  const page = await context.newPage();

  await page.goto(`${s.url}/finance/report`, { waitUntil: 'domcontentloaded' });
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().startsWith(`${s.url}/oauth2/callback`)),
    signInAtDevIdp(page, CAROL),
  ]);
  assert.equal(response.status(), 500);
  const text = await page.locator('body').innerText();
  assert.match(text, /too many group memberships/);
  assert.match(text, /session\.store: redis/);
  assert.match(text, /ERR_SESSION_TOO_LARGE/);
  assert.doesNotMatch(text, /identity provider gave an unexpected answer/);
  assert.ok(!(await context.cookies(s.url)).some((c) => c.name === 'portcullis' || (c.name.startsWith('portcullis_') && !c.name.includes('txn'))), 'no session cookie');
});
