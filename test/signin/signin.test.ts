// The walking skeleton end to end: a real OpenID Provider, a real upstream, the proxy on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';

const ALICE = { user: 'alice', password: 'alice-password' };
const BOB = { user: 'bob', password: 'bob-password' };

test('alice signs in and reaches the upstream as herself, without Portcullis cookies', async (t) => {
  const s = await startStack(t);
  const r = await loginViaHttp(`${s.url}/hello?x=1`, ALICE);
  assert.equal(r.status, 200);
  assert.equal(r.finalUrl, `${s.url}/hello?x=1`, 'back at the original URL after sign-in');
  const seen = s.upstream.requests.at(-1)!;
  assert.equal(seen.url, '/hello?x=1');
  assert.equal(seen.headers['x-forwarded-user'], 'alice');
  assert.equal(seen.headers['x-forwarded-email'], 'alice@example.com');
  assert.equal(seen.headers['x-forwarded-preferred-username'], 'alice');
  assert.equal(seen.headers['x-forwarded-groups'], 'admin,dev');
  assert.ok(!String(seen.headers.cookie ?? '').includes('portcullis'), 'no Portcullis cookie reaches the upstream');
  const setCookie = r.hops.length > 0 ? r.jar.names(s.url) : [];
  assert.ok(setCookie.includes('portcullis'), `session cookie stored (have ${setCookie.join(',')})`);
  assert.ok(!setCookie.some((n) => n.startsWith('portcullis_txn_')), 'the transaction cookie is single use and cleared');
});

test('a signed-in user without the group gets 403: HTML for browsers, JSON for APIs', async (t) => {
  const s = await startStack(t);
  const r = await loginViaHttp(`${s.url}/admin/panel`, BOB);
  assert.equal(r.status, 403);
  assert.match(r.body, /bob@example\.com/);
  assert.match(r.body, /sign_out/);
  assert.equal(s.upstream.requests.filter((q) => q.url.startsWith('/admin')).length, 0, 'a denied request never reaches the upstream');
  const api = await request(`${s.url}/admin/panel`, { headers: { cookie: r.jar.header(s.url), accept: 'application/json' } });
  assert.equal(api.statusCode, 403);
  assert.equal((await api.body.json() as { error: string }).error, 'forbidden');
});

test('no session: browser navigations are redirected to the IdP, everything else gets 401', async (t) => {
  const s = await startStack(t);
  const nav = await request(`${s.url}/app`, { headers: { accept: 'text/html', 'sec-fetch-mode': 'navigate' } });
  await nav.body.dump();
  assert.equal(nav.statusCode, 302);
  const loc = new URL(String(nav.headers.location));
  assert.equal(loc.origin, s.idp.issuer);
  assert.equal(loc.searchParams.get('code_challenge_method'), 'S256');
  assert.ok(loc.searchParams.get('state') && loc.searchParams.get('nonce') && loc.searchParams.get('code_challenge'));
  assert.equal(loc.searchParams.get('redirect_uri'), `${s.url}/oauth2/callback`);
  assert.match(String(loc.searchParams.get('scope')), /(^| )openid( |$)/);
  for (const [method, headers] of [
    ['GET', { accept: 'application/json' }],
    ['GET', { accept: 'text/html', 'sec-fetch-mode': 'cors' }],
    ['GET', { accept: 'text/html', 'x-requested-with': 'XMLHttpRequest' }],
    ['POST', { accept: 'text/html' }],
    ['DELETE', {}],
  ] as const) {
    const res = await request(`${s.url}/app`, { method, headers });
    const body = await res.body.text();
    assert.equal(res.statusCode, 401, `${method} ${JSON.stringify(headers)}`);
    assert.ok(res.headers['www-authenticate'], 'WWW-Authenticate present');
    assert.equal(JSON.parse(body).error, 'unauthenticated');
  }
  assert.equal(s.upstream.requests.length, 0, 'no unauthenticated request reached the upstream');
});

test('public routes need no sign-in and get identity only with a session', async (t) => {
  const s = await startStack(t);
  const anon = await request(`${s.url}/public/file.css`);
  await anon.body.dump();
  assert.equal(anon.statusCode, 200);
  assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], undefined);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const signed = await request(`${s.url}/public/file.css`, { headers: { cookie: jar.header(s.url) } });
  await signed.body.dump();
  assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'alice');
});

test('several tabs can sign in at once', async (t) => {
  const s = await startStack(t);
  const jar = new CookieJar();
  const stop = (u: URL) => u.pathname === '/oauth2/callback';
  // Two tabs start a sign-in; both reach the IdP's callback redirect before either finishes.
  const a = await loginViaHttp(`${s.url}/tab-a`, { ...ALICE, jar, stopAt: stop });
  const b = await loginViaHttp(`${s.url}/tab-b`, { ...ALICE, jar, stopAt: stop });
  assert.ok(a.finalUrl.includes('/oauth2/callback') && b.finalUrl.includes('/oauth2/callback'));
  const rb = await followRedirects(b.finalUrl, jar);
  const ra = await followRedirects(a.finalUrl, jar);
  assert.equal(rb.status, 200);
  assert.equal(new URL(rb.finalUrl).pathname, '/tab-b');
  assert.equal(ra.status, 200);
  assert.equal(new URL(ra.finalUrl).pathname, '/tab-a');
});

test('everything under /oauth2/ is Portcullis\'s own and never proxied', async (t) => {
  const s = await startStack(t);
  for (const path of ['/oauth2/unknown', '/oauth2/callback/../secret', '/oauth2/', '/public/../oauth2/nope']) {
    const r = await request(`${s.url}${path}`, { headers: { accept: 'application/json' } });
    const body = await r.body.text();
    assert.equal(r.statusCode, 404, `${path}: ${body}`);
    assert.equal(JSON.parse(body).error, 'ERR_ROUTE_NOT_FOUND');
  }
  assert.equal(s.upstream.requests.length, 0);
});
