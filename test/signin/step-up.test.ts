// Step-up per route (routes[].stepUp) end to end against the dev IdP (oidc-provider): a session at a
// weak acr visiting a route that lists stronger ones is sent to the IdP with acr_values (and the acr
// as an essential claim), comes back upgraded IN the same session (same Portcullis session id, other
// routes unaffected); a route with maxAge sends a session that has grown too old back with max_age
// and prompt=login, and gets a fresh auth_time. API clients get RFC 9470's 401 instead of a redirect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import WebSocket from 'ws';
import { startRedis } from '../helpers/redis.js';
import { adminRequest } from '../helpers/admin.js';
import { until } from '../helpers/wait.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';
import { processClock } from '../helpers/clock.js';
import { ALICE, sessionOf, signInWeakly, startStepUpStack } from '../helpers/step-up.js';

test('a weak session on an acr route is sent to the IdP with acr_values, comes back upgraded in the same session, and other routes go on working', async (t) => {
  const s = await startStepUpStack(t);
  const { jar, session: before } = await signInWeakly(s);

  // The step-up redirect: straight to the IdP, asking for the route's acr values (config order) as
  // acr_values and as an essential claim; no prompt=login (the sign-in is not too old, only too weak).
  const first = await followRedirects(`${s.url}/console/users`, jar, { stopAt: (u) => u.origin === s.idp.issuer });
  assert.equal(first.status, 302);
  const auth = new URL(first.finalUrl);
  assert.equal(auth.pathname, '/auth');
  assert.equal(auth.searchParams.get('acr_values'), 'phr mfa');
  assert.deepEqual(JSON.parse(auth.searchParams.get('claims')!), { id_token: { acr: { essential: true, values: ['phr', 'mfa'] } } });
  assert.equal(auth.searchParams.get('max_age'), null);
  assert.equal(auth.searchParams.get('prompt'), null);

  // The IdP asks again (its session is at pwd); the strongest requested method is preselected.
  const r = await loginViaHttp(`${s.url}/console/users`, { ...ALICE, jar });
  assert.equal(r.status, 200, r.body.slice(0, 300));
  assert.equal(r.finalUrl, `${s.url}/console/users`, 'back at the step-up route');
  assert.ok(r.hops.some((h) => h.url.includes('/interaction/')), 'the IdP asked the user to sign in again');
  assert.equal(s.upstream.requests.at(-1)!.url, '/console/users');

  const after = await sessionOf(s, jar);
  assert.equal(after?.claims.acr, 'phr');
  assert.equal(after?.sid, before.sid, 'the same Portcullis session, upgraded in place');
  assert.equal(after?.createdAt, before.createdAt, 'createdAt kept: the absolute timeout counts from the first sign-in');

  // Ordinary routes and the step-up route work on, without another sign-in.
  for (const path of ['/home', '/console/users']) {
    const again = await followRedirects(`${s.url}${path}`, jar);
    assert.deepEqual(again.hops.map((h) => h.status), [200], `${path} served at once`);
  }
  assert.ok(s.logs.some((l) => l.includes('session upgraded in place')));
});

test('maxAge: a session grown older than maxAge is sent back with max_age and prompt=login and returns with a fresh auth_time', async (t) => {
  const clock = processClock(t);
  const s = await startStepUpStack(t, { now: clock.now });
  const { jar, session: before } = await signInWeakly(s);
  const recent = await followRedirects(`${s.url}/recent`, jar);
  assert.deepEqual(recent.hops.map((h) => h.status), [200], 'a fresh sign-in is recent enough');

  clock.advance(3 * 60_000);
  const first = await followRedirects(`${s.url}/recent`, jar, { stopAt: (u) => u.origin === s.idp.issuer });
  const auth = new URL(first.finalUrl);
  assert.equal(auth.searchParams.get('max_age'), '120');
  assert.equal(auth.searchParams.get('prompt'), 'login', 'the IdP must not answer from its SSO session');
  assert.equal(auth.searchParams.get('acr_values'), null);

  const r = await loginViaHttp(`${s.url}/recent`, { ...ALICE, jar, fields: { acr: 'pwd' } });
  assert.equal(r.finalUrl, `${s.url}/recent`, `${r.status} ${r.body.replace(/<head>[\s\S]*<\/head>/, "")}`);
  assert.equal(r.status, 200);
  const after = await sessionOf(s, jar);
  assert.equal(after?.sid, before.sid, 'same session');
  assert.ok(Number(after?.claims.auth_time) * 1000 > clock.now() - 60_000, `a fresh auth_time (${after?.claims.auth_time})`);
  assert.ok(Number(after?.claims.auth_time) > Number(before.claims.auth_time));
});

test('a browser with no session on a step-up route signs in once, asked for the step-up from the start', async (t) => {
  const s = await startStepUpStack(t);
  const jar = new CookieJar();
  const first = await followRedirects(`${s.url}/both`, jar, { stopAt: (u) => u.origin === s.idp.issuer });
  const auth = new URL(first.finalUrl);
  assert.equal(auth.searchParams.get('acr_values'), 'mfa');
  assert.equal(auth.searchParams.get('max_age'), '600');
  assert.equal(auth.searchParams.get('prompt'), null, 'no session to be too old: no prompt=login');
  const r = await loginViaHttp(`${s.url}/both`, { ...ALICE, jar });
  assert.equal(r.finalUrl, `${s.url}/both`);
  assert.equal(r.status, 200);
  assert.equal((await sessionOf(s, jar))?.claims.acr, 'mfa');
});

test('API and XHR requests get 401 insufficient_user_authentication with what is needed (RFC 9470), never a redirect', async (t) => {
  const s = await startStepUpStack(t);
  const { jar } = await signInWeakly(s);
  const call = async (path: string, headers: Record<string, string> = {}) => {
    const r = await request(`${s.url}${path}`, { headers: { cookie: jar.header(s.url), accept: 'application/json', ...headers } });
    return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
  };

  const acr = await call('/console/api/users');
  assert.equal(acr.status, 401);
  assert.equal(acr.headers['www-authenticate'], `OIDC realm="portcullis", error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="phr mfa", sign_in_url="${s.url}/oauth2/start?step_up=console"`);
  const body = JSON.parse(acr.body);
  assert.equal(body.error, 'insufficient_user_authentication');
  assert.equal(body.route, 'console');
  assert.equal(body.acr_values, 'phr mfa');
  assert.equal(body.signInUrl, `${s.url}/oauth2/start?step_up=console`);
  assert.match(body.message, /one of the authentication levels phr, mfa/);

  const both = await call('/both', { 'x-requested-with': 'XMLHttpRequest', accept: 'text/html' });
  assert.equal(both.status, 401, 'an XHR is never redirected, whatever it accepts');
  assert.match(String(both.headers['www-authenticate']), /acr_values="mfa", max_age="600", sign_in_url=/);
  assert.equal(JSON.parse(both.body).max_age, '600');

  // A form post wanting HTML: a page that says what is needed and links to the step-up sign-in.
  const page = await request(`${s.url}/console/save`, { method: 'POST', headers: { cookie: jar.header(s.url), accept: 'text/html' }, body: 'x=1' });
  const html = await page.body.text();
  assert.equal(page.statusCode, 401);
  assert.match(html, /needs a sign-in with one of the authentication levels phr, mfa/);
  assert.match(html, new RegExp(`href="${s.url}/oauth2/start\\?step_up=console&amp;rd=`));
  assert.equal(s.upstream.requests.filter((q) => q.url.startsWith('/console') || q.url.startsWith('/both')).length, 0, 'nothing reached the upstream');
});

test('/oauth2/start?step_up=<route> (or a return URL on a step-up route) asks for that route\'s step-up, prompt=login only for a session too old; an unknown route name asks for nothing extra', async (t) => {
  const clock = processClock(t);
  const s = await startStepUpStack(t, { now: clock.now });
  const { jar } = await signInWeakly(s);
  const idpUrl = async (query: string) => new URL((await followRedirects(`${s.url}/oauth2/start?${query}`, jar, { stopAt: (u) => u.origin === s.idp.issuer })).finalUrl);
  let u = await idpUrl('step_up=recent-mfa&rd=%2Frecent-mfa');
  assert.equal(u.searchParams.get('acr_values'), 'mfa');
  assert.equal(u.searchParams.get('max_age'), '120');
  assert.equal(u.searchParams.get('prompt'), null, 'too weak, not too old');
  clock.advance(3 * 60_000);
  u = await idpUrl('step_up=recent-mfa&rd=%2Frecent-mfa');
  assert.equal(u.searchParams.get('prompt'), 'login', 'too old as well: a new sign-in');
  u = await idpUrl('step_up=no-such-route');
  assert.equal(u.searchParams.get('acr_values'), null);
  assert.equal(u.searchParams.get('max_age'), null);
  // Without step_up, the return URL's route decides: a forward-auth proxy's plain
  // /oauth2/start?rd=<original URL> steps up for a step-up route instead of looping.
  u = await idpUrl(`rd=${encodeURIComponent(`${s.url}/console/x/../users?q=1`)}`);
  assert.equal(u.searchParams.get('acr_values'), 'phr mfa');
  u = await idpUrl(`rd=${encodeURIComponent(`${s.url}/home`)}`);
  assert.equal(u.searchParams.get('acr_values'), null);
});

test('Redis store: the step-up rewrites the same entry (same ticket, one listed session), a live WebSocket stays open, and revoking the user still ends it', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-admin-'));
  const token = 'admin-token-0123456789-abcdefghij';
  writeFileSync(join(dir, 'token'), `${token}\n`);
  const s = await startStepUpStack(t, { edit: (raw) => { Object.assign(raw.session as object, { store: 'redis', redis: { url: redis.url } }); raw.admin = { tokenFile: join(dir, 'token') }; } });
  await until('redis ready', 5000, async () => (await request(`${s.url}/readyz`)).statusCode === 200);
  const { jar, session: before } = await signInWeakly(s);
  const ticket = jar.get('portcullis', s.url);
  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/live`, { headers: { cookie: jar.header(s.url) } });
  await new Promise((resolve, reject) => { ws.once('message', resolve); ws.once('error', reject); });
  let closed = false;
  ws.once('close', () => { closed = true; });

  const r = await loginViaHttp(`${s.url}/console`, { ...ALICE, jar });
  assert.equal(r.finalUrl, `${s.url}/console`);
  const after = await sessionOf(s, jar);
  assert.equal(after?.sid, before.sid);
  assert.equal(after?.claims.acr, 'phr');
  assert.equal(jar.get('portcullis', s.url), ticket, 'the same ticket: the entry was rewritten in place');
  const list = await adminRequest(s.server.metricsUrl!, token, 'GET', '/admin/sessions?sub=alice');
  assert.equal(list.json.sessions.length, 1, list.text);
  assert.equal(closed, false, 'the WebSocket of the upgraded session stays open');

  const revoke = await adminRequest(s.server.metricsUrl!, token, 'POST', '/admin/sessions/revoke', { sub: 'alice' });
  assert.equal(revoke.json.sessions, 1, revoke.text);
  await until('the WebSocket is cut', 5000, () => closed);
  const gone = await request(`${s.url}/console`, { headers: { cookie: jar.header(s.url), accept: 'application/json' } });
  await gone.body.dump();
  assert.equal(gone.statusCode, 401);
  assert.equal((await sessionOf(s, jar)), undefined);
});
