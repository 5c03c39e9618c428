// Step-up in a real browser (Debian Chromium via playwright-core) against the dev IdP (oidc-provider
// offering the acr values pwd, mfa, phr): a password sign-in, then the admin console asks the IdP
// for phr or mfa and comes back in the SAME session, upgraded; the rest of the app never asks; a
// console visit after maxAge goes back to the IdP with max_age and prompt=login for a fresh sign-in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BrowserContext } from 'playwright-core';
import { launchChromium, recordNavigations, signInAtDevIdp } from '../helpers/chromium.js';
import { processClock } from '../helpers/clock.js';
import { ALICE, startStepUpStack } from '../helpers/step-up.js';
import type { Stack } from '../helpers/stack.js';

const TEST_TIMEOUT_MS = 60_000;

/** The Portcullis session behind the browser's session cookie. */
async function sessionIn(s: Stack, context: BrowserContext) {
  const cookie = (await context.cookies(s.url)).find((c) => c.name === 'portcullis');
  const lookup = await s.server.runtime.sessions.lookup({ portcullis: cookie?.value });
  return lookup.kind === 'valid' ? lookup.session : undefined;
}

test('Chromium: a password session steps up to phr for the console in the same session; the app never asks again', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const s = await startStepUpStack(t);
  const page = await context.newPage();
  const hops = recordNavigations(page);
  const seen = () => hops.map((h) => h.url);

  await page.goto(`${s.url}/home`, { waitUntil: 'domcontentloaded' });
  await page.locator('select[name="acr"]').selectOption('pwd');
  await signInAtDevIdp(page, ALICE);
  assert.equal(page.url(), `${s.url}/home`);
  const before = await sessionIn(s, context);
  assert.equal(before?.claims.acr, 'pwd');

  await page.goto(`${s.url}/console/users`, { waitUntil: 'domcontentloaded' });
  const auth = new URL(seen().find((u) => u.startsWith(`${s.idp.issuer}/auth?`) && u.includes('acr_values'))!);
  assert.equal(auth.searchParams.get('acr_values'), 'phr mfa');
  assert.equal(new URL(page.url()).origin, s.idp.issuer, 'the IdP asks again: its session is at pwd');
  assert.equal(await page.locator('select[name="acr"]').inputValue(), 'phr', 'the strongest requested method is offered first');
  await signInAtDevIdp(page, ALICE);
  assert.equal(page.url(), `${s.url}/console/users`);
  assert.equal(await page.locator('h1').innerText(), 'Portcullis demo upstream');

  const after = await sessionIn(s, context);
  assert.equal(after?.claims.acr, 'phr');
  assert.equal(after?.sid, before!.sid, 'the same Portcullis session, upgraded in place');
  assert.equal((await context.cookies(s.url)).filter((c) => c.name === 'portcullis').length, 1);

  const idpVisits = seen().filter((u) => u.startsWith(s.idp.issuer)).length;
  for (const path of ['/home', '/console/users', '/elsewhere']) {
    const res = await page.goto(`${s.url}${path}`, { waitUntil: 'domcontentloaded' });
    assert.equal(res?.status(), 200, path);
    assert.equal(page.url(), `${s.url}${path}`);
  }
  assert.equal(seen().filter((u) => u.startsWith(s.idp.issuer)).length, idpVisits, 'no further trip to the IdP');
});

test('Chromium: past maxAge the route sends the browser back with max_age and prompt=login; a fresh auth_time, the same session', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const context = await launchChromium(t);
  if (!context) return;
  const clock = processClock(t);
  const s = await startStepUpStack(t, { now: clock.now });
  const page = await context.newPage();
  const hops = recordNavigations(page);
  const seen = () => hops.map((h) => h.url);

  await page.goto(`${s.url}/recent`, { waitUntil: 'domcontentloaded' });
  await signInAtDevIdp(page, ALICE);
  assert.equal(page.url(), `${s.url}/recent`);
  const before = await sessionIn(s, context);

  clock.advance(3 * 60_000);
  await page.goto(`${s.url}/recent`, { waitUntil: 'domcontentloaded' });
  const auth = new URL(seen().filter((u) => u.startsWith(`${s.idp.issuer}/auth?`)).at(-1)!);
  assert.equal(auth.searchParams.get('max_age'), '120');
  assert.equal(auth.searchParams.get('prompt'), 'login');
  assert.equal(new URL(page.url()).pathname.startsWith('/interaction/'), true, 'a new sign-in at the IdP');
  await signInAtDevIdp(page, ALICE);
  assert.equal(page.url(), `${s.url}/recent`);
  const after = await sessionIn(s, context);
  assert.equal(after?.sid, before!.sid);
  assert.ok(Number(after?.claims.auth_time) > Number(before?.claims.auth_time), 'a fresh auth_time');
});
