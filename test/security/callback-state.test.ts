// Attack: the callback, abused — no state, a state from nowhere, a replayed code, an IdP error with
// markup in it, a session cookie planted before sign-in (fixation), and a sign-in loop that would grow
// the Cookie header. Every failure is a 4xx page that says what happened, never a redirect loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { CookieJar, followRedirects, loginViaHttp, parseForms } from '../helpers/browserless-login.js';
import { ALICE, API, BOB, NAVIGATION, issuedCookieNames } from './support.js';

const toCallback = (u: URL) => u.pathname === '/oauth2/callback';

async function get(url: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const res = await request(url, { headers });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** A 4xx error page, not a redirect, offering to sign in again; no session cookie issued. */
function assertErrorPage(r: { status: number; headers: Record<string, string | string[] | undefined>; body: string }, status: number | RegExp, what: string): void {
  if (typeof status === 'number') assert.equal(r.status, status, `${what}: ${r.body.slice(0, 300)}`);
  else assert.match(String(r.status), status, what);
  assert.ok(r.status >= 400 && r.status < 500, `${what}: a 4xx, not ${r.status}`);
  assert.equal(r.headers.location, undefined, `${what}: no redirect`);
  assert.match(String(r.headers['content-type']), /text\/html/, what);
  assert.match(r.body, /Sign in again/, `${what}: offers to start again`);
  assert.ok(!issuedCookieNames(r.headers).includes('portcullis'), `${what}: no session issued`);
}

test('a callback without state is a 400 page that offers to sign in again', async (t) => {
  const s = await startStack(t);
  for (const q of ['', '?code=abc', '?code=abc&state=', '?state=']) {
    const r = await get(`${s.url}/oauth2/callback${q}`, NAVIGATION);
    assertErrorPage(r, 400, `callback${q}`);
    assert.match(r.body, /state/i, 'says what is wrong');
    const api = await get(`${s.url}/oauth2/callback${q}`, API);
    assert.equal(api.status, 400);
    assert.equal(JSON.parse(api.body).error, 'ERR_CALLBACK_STATE_MISSING');
  }
  assert.equal(s.upstream.requests.length, 0);
});

test('a state that matches no transaction is a 400 page', async (t) => {
  const s = await startStack(t);
  // A real transaction in this browser, so the lookups below are not trivially "no cookie at all".
  const jar = new CookieJar();
  const start = await followRedirects(`${s.url}/oauth2/start?rd=/x`, jar, { stopAt: (u) => u.origin === s.idp.issuer });
  const realState = new URL(start.finalUrl).searchParams.get('state')!;
  assert.ok(realState);
  const [id] = realState.split('.');
  for (const state of [
    'nonsense', 'AAAAAAAAAAAAAAAA.BBBB', `${id}.wrong-secret-part`, `${id}`, `${id}.`, '../../etc/passwd', `${realState}x`, 'a'.repeat(3000),
  ]) {
    const r = await get(`${s.url}/oauth2/callback?code=abc&state=${encodeURIComponent(state)}`, { ...NAVIGATION, cookie: jar.header(s.url) });
    assertErrorPage(r, 400, `state=${state.slice(0, 40)}`);
  }
  // The right state from another browser (no transaction cookie) is refused too.
  const other = await get(`${s.url}/oauth2/callback?code=abc&state=${encodeURIComponent(realState)}`, NAVIGATION);
  assertErrorPage(other, 400, 'state without its cookie');
  assert.equal(s.upstream.requests.length, 0);
});

test('a replayed callback URL is refused and issues no new session', async (t) => {
  const s = await startStack(t);
  const jar = new CookieJar();
  const half = await loginViaHttp(`${s.url}/replay-me`, { ...ALICE, jar, stopAt: toCallback });
  assert.equal(new URL(half.finalUrl).pathname, '/oauth2/callback', 'stopped at the callback');
  const callbackUrl = half.finalUrl;
  const txnName = jar.names(s.url).find((n) => n.startsWith('portcullis_txn_'))!;
  const txnValue = jar.get(txnName, s.url)!;
  assert.ok(txnValue, 'transaction cookie present before the callback');

  const done = await followRedirects(callbackUrl, jar);
  assert.equal(done.status, 200);
  assert.equal(new URL(done.finalUrl).pathname, '/replay-me');
  const session = jar.get('portcullis', s.url);
  assert.ok(session);
  assert.equal(jar.get(txnName, s.url), undefined, 'the transaction cookie is single use');
  const upstreamBefore = s.upstream.requests.length;

  // 1. The same URL with the browser's cookies as they are after the sign-in.
  const again = await get(callbackUrl, { ...NAVIGATION, cookie: jar.header(s.url) });
  assertErrorPage(again, 400, 'replay with the post-login jar');
  // 2. An attacker who captured the transaction cookie too.
  const withTxn = await get(callbackUrl, { ...NAVIGATION, cookie: `${txnName}=${txnValue}` });
  assertErrorPage(withTxn, 400, 'replay with the captured transaction cookie');
  // 3. Both.
  const both = await get(callbackUrl, { ...NAVIGATION, cookie: `${jar.header(s.url)}; ${txnName}=${txnValue}` });
  assertErrorPage(both, 400, 'replay with everything');
  assert.equal(s.upstream.requests.length, upstreamBefore, 'nothing reached the upstream');
  // The existing session is unaffected.
  const still = await request(`${s.url}/still`, { headers: { ...API, cookie: `portcullis=${session}` } });
  await still.body.dump();
  assert.equal(still.statusCode, 200);
});

test('the IdP reporting access_denied (the user pressed Cancel) gives a 4xx page, no session, no loop', async (t) => {
  const s = await startStack(t);
  const jar = new CookieJar();
  const form = await followRedirects(`${s.url}/dashboard`, jar);
  assert.equal(form.status, 200);
  const abort = parseForms(form.body, form.finalUrl).find((f) => f.action.pathname.endsWith('/abort'));
  assert.ok(abort, "the dev IdP's Cancel button");
  const r = await followRedirects(abort.action, jar, { method: 'POST', body: abort.fields.toString(), headers: { origin: new URL(form.finalUrl).origin } });
  assert.ok(r.hops.some((h) => h.url.startsWith(`${s.url}/oauth2/callback`) && /error=access_denied/.test(h.url)), 'the IdP sent access_denied to the callback');
  assertErrorPage(r, /^4\d\d$/, 'access_denied');
  assert.equal(new URL(r.finalUrl).pathname, '/oauth2/callback', 'the error is shown at the callback, not after more redirects');
  assert.match(r.body, /did not grant access|cancel|denied/i, 'says what went wrong');
  assert.equal(jar.get('portcullis', s.url), undefined, 'no session');
  assert.ok(!jar.names(s.url).some((n) => n.startsWith('portcullis_txn_')), 'the transaction is cleared');
  assert.equal(s.upstream.requests.length, 0);
});

test('an error_description with markup is escaped on the error page', async (t) => {
  const s = await startStack(t);
  const evil = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'';
  // Without a transaction.
  const bare = await get(`${s.url}/oauth2/callback?error=server_error&error_description=${encodeURIComponent(evil)}`, NAVIGATION);
  assert.ok(bare.status >= 400 && bare.status < 500, String(bare.status));
  assert.equal(bare.headers.location, undefined);
  // With a real transaction, so the error goes through the OIDC response validation.
  const jar = new CookieJar();
  const start = await followRedirects(`${s.url}/oauth2/start`, jar, { stopAt: (u) => u.origin === s.idp.issuer });
  const state = new URL(start.finalUrl).searchParams.get('state')!;
  const q = new URLSearchParams({ error: 'temporarily_unavailable', error_description: evil, state, iss: s.idp.issuer });
  const withTxn = await get(`${s.url}/oauth2/callback?${q}`, { ...NAVIGATION, cookie: jar.header(s.url) });
  assertErrorPage(withTxn, 400, 'IdP error with a transaction');
  for (const page of [bare, withTxn]) {
    assert.doesNotMatch(page.body, /<script>alert|<img src=x/i, 'markup is not echoed raw');
    assert.doesNotMatch(page.body, /onerror=alert\(2\)>"'/, 'quotes are escaped');
  }
  assert.match(withTxn.body, /temporarily_unavailable/, 'the IdP error code is shown');
  assert.match(withTxn.body, /&lt;script&gt;/, 'the description is shown, escaped');
});

test('a session cookie planted before sign-in is replaced by a fresh one (no fixation)', async (t) => {
  const s = await startStack(t);
  // The attacker signs in as bob and plants that cookie in the victim's browser.
  const attacker = await loginViaHttp(`${s.url}/`, BOB);
  const planted = attacker.jar.get('portcullis', s.url)!;
  assert.ok(planted);
  for (const plant of [
    (jar: CookieJar) => jar.set('portcullis', planted, s.url),
    (jar: CookieJar) => jar.set('portcullis', 'v1.attacker-chosen-value', s.url),
    (jar: CookieJar) => { jar.set('portcullis_0', planted.slice(0, 100), s.url); jar.set('portcullis_1', planted.slice(100), s.url); },
  ]) {
    const jar = new CookieJar();
    plant(jar);
    const r = await loginViaHttp(`${s.url}/oauth2/start?rd=%2Fwhoami`, { ...ALICE, jar });
    assert.equal(r.status, 200);
    assert.equal(r.finalUrl, `${s.url}/whoami`);
    const fresh = jar.get('portcullis', s.url);
    assert.ok(fresh && fresh !== planted && fresh !== 'v1.attacker-chosen-value', 'a new session cookie');
    assert.equal(jar.get('portcullis_0', s.url), undefined, 'planted chunks are expired');
    assert.equal(jar.get('portcullis_1', s.url), undefined, 'planted chunks are expired');
    const seen = s.upstream.requests.at(-1)!;
    assert.equal(seen.url, '/whoami');
    assert.equal(seen.headers['x-forwarded-user'], 'alice', 'the victim is herself, not the attacker');
    const again = await request(`${s.url}/again`, { headers: { ...API, cookie: jar.header(s.url) } });
    await again.body.dump();
    assert.equal(again.statusCode, 200);
    assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'alice');
  }
});

test('at most 5 transaction cookies exist however many sign-ins are started', async (t) => {
  const s = await startStack(t);
  const jar = new CookieJar();
  const locations: string[] = [];
  for (let i = 0; i < 8; i++) {
    const r = await followRedirects(`${s.url}/oauth2/start?rd=%2Ftab-${i}`, jar, { stopAt: (u) => u.origin === s.idp.issuer });
    locations.push(r.finalUrl);
    await new Promise((res) => setTimeout(res, 3)); // distinct creation times
    const txns = jar.names(s.url).filter((n) => n.startsWith('portcullis_txn_'));
    assert.ok(txns.length <= 5, `after ${i + 1} sign-ins: ${txns.length} transaction cookies`);
  }
  const txns = jar.names(s.url).filter((n) => n.startsWith('portcullis_txn_'));
  assert.equal(txns.length, 5);
  // The newest flow still completes; the oldest one was evicted and its callback is refused.
  const newest = await loginViaHttp(locations[7]!, { ...ALICE, jar });
  assert.equal(newest.finalUrl, `${s.url}/tab-7`);
  assert.equal(newest.status, 200);
  const oldest = await followRedirects(locations[0]!, jar);
  assert.equal(new URL(oldest.finalUrl).pathname, '/oauth2/callback');
  assert.equal(oldest.status, 400);
  assert.equal(oldest.headers.location, undefined);
});
