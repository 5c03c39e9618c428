// Session lifetimes, refresh, key rotation and sign-out, against the real dev IdP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, TEST_SESSION_SECRET } from '../helpers/stack.js';
import type { ActiveSession } from '../../src/session/sessions.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';

const ALICE = { user: 'alice', password: 'alice-password' };

/** A clock the test moves by hand. */
function clock() {
  let offset = 0;
  const now = () => Date.now() + offset;
  return { now, advance: (ms: number) => { offset += ms; } };
}

async function get(url: string, jar: CookieJar, headers: Record<string, string> = { accept: 'application/json' }) {
  const r = await request(url, { headers: { ...headers, cookie: jar.header(url) } });
  jar.store(r.headers['set-cookie'], url);
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

test('idle timeout: no request for longer than idleTimeout → sign in again, though the ID token is still valid', async (t) => {
  const c = clock();
  const s = await startStack(t, { now: c.now, edit: (raw) => { (raw.session as Record<string, unknown>).idleTimeout = '10m'; } });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  c.advance(9 * 60_000);
  assert.equal((await get(`${s.url}/x`, jar)).status, 200, 'active within the idle window');
  c.advance(9 * 60_000);
  assert.equal((await get(`${s.url}/x`, jar)).status, 200, 'each request renews the idle window');
  c.advance(11 * 60_000);
  assert.equal((await get(`${s.url}/x`, jar)).status, 401, 'idle for 11 minutes → no session');
});

test('absolute timeout ends the session however active it is', async (t) => {
  const c = clock();
  const s = await startStack(t, { now: c.now, edit: (raw) => { Object.assign(raw.session as object, { idleTimeout: '10m', absoluteTimeout: '30m' }); } });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  for (let i = 0; i < 3; i++) {
    c.advance(9 * 60_000);
    assert.equal((await get(`${s.url}/x`, jar)).status, 200);
  }
  c.advance(4 * 60_000);
  const r = await get(`${s.url}/x`, jar, { accept: 'text/html', 'sec-fetch-mode': 'navigate' });
  assert.equal(r.status, 302, 'past 30 minutes: back to the IdP');
  assert.match(String(r.headers.location), new RegExp(`^${s.idp.issuer}`));
});

test('tokens are refreshed before they expire, once for many concurrent requests', async (t) => {
  // 62 s tokens: due for refresh 20 % of their lifetime (12.4 s) before they expire. The dev IdP and
  // the proxy share this process's Date.now(), moved by hand so the tokens' exp agrees with the proxy.
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  t.after(() => { Date.now = realNow; });
  const s = await startStack(t, { now: () => Date.now(), idp: { ttl: { AccessToken: 62, IdToken: 62 } } });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const grants: string[] = [];
  s.idp.provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => grants.push(String(ctx.oidc.params?.grant_type)));
  offset += 45_000;
  assert.equal((await get(`${s.url}/early`, jar)).status, 200);
  assert.deepEqual(grants, [], 'not yet due 17 s before expiry');
  offset += 6_000;
  const results = await Promise.all(Array.from({ length: 8 }, () => get(`${s.url}/x`, jar)));
  assert.deepEqual(results.map((r) => r.status), Array(8).fill(200));
  assert.deepEqual(grants, ['refresh_token'], 'exactly one refresh for eight concurrent requests');
  assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'alice');
  // The refreshed session carries on without another refresh.
  offset += 10_000;
  assert.equal((await get(`${s.url}/y`, jar)).status, 200);
  assert.equal(grants.length, 1);
});

test('a refused refresh (the IdP session is gone) ends the session', async (t) => {
  const c = clock();
  const s = await startStack(t, { now: c.now });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  // End every grant at the IdP: the refresh token is no longer valid (invalid_grant).
  await revokeAllRefreshTokens(s, jar);
  c.advance(2 * 3600_000);
  const r = await get(`${s.url}/x`, jar);
  assert.equal(r.status, 401);
});

async function revokeAllRefreshTokens(s: Awaited<ReturnType<typeof startStack>>, jar: CookieJar): Promise<void> {
  // Revoke through the IdP's own revocation endpoint with the token from the session record.
  const cookies = { portcullis: jar.get('portcullis', s.url) };
  const lookup = await s.server.runtime.sessions.lookup(cookies);
  assert.equal(lookup.kind, 'valid');
  const record = await s.server.runtime.sessions.record((lookup as { session: ActiveSession }).session, cookies);
  assert.ok(record?.refreshToken, 'the IdP issued a refresh token');
  const r = await request(`${s.idp.issuer}/token/revocation`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${s.idp.clientId}:${s.idp.clientSecret}`).toString('base64')}` },
    body: new URLSearchParams({ token: record.refreshToken!, token_type_hint: 'refresh_token' }).toString(),
  });
  await r.body.dump();
  assert.equal(r.statusCode, 200);
}

test('key rotation: a cookie sealed with an older secret still opens and is re-sealed with the first', async (t) => {
  const s1 = await startStack(t);
  const { jar } = await loginViaHttp(`${s1.url}/`, ALICE);
  const oldValue = jar.get('portcullis', s1.url)!;
  // Same IdP, a second proxy whose first secret is new and whose second is the old one.
  const NEW = 'a-brand-new-session-secret-for-rotation-0123456789';
  const s2 = await startStack(t, { existingIdp: s1.idp, edit: (raw) => { (raw.session as Record<string, unknown>).secrets = [NEW, TEST_SESSION_SECRET]; } });
  const jar2 = new CookieJar();
  jar2.set('portcullis', oldValue, s2.url);
  const r = await get(`${s2.url}/x`, jar2);
  assert.equal(r.status, 200, 'old-secret cookie accepted');
  const resealed = jar2.get('portcullis', s2.url);
  assert.ok(resealed && resealed !== oldValue, 're-sealed on this response');
  // Only the new secret: the re-sealed cookie works, the old one does not.
  const s3 = await startStack(t, { existingIdp: s1.idp, edit: (raw) => { (raw.session as Record<string, unknown>).secrets = [NEW]; } });
  const jar3 = new CookieJar();
  jar3.set('portcullis', resealed!, s3.url);
  assert.equal((await get(`${s3.url}/x`, jar3)).status, 200);
  const jar4 = new CookieJar();
  jar4.set('portcullis', oldValue, s3.url);
  assert.equal((await get(`${s3.url}/x`, jar4)).status, 401, 'a removed secret no longer opens anything');
});

test('sign-out: GET confirms, POST clears cookies and goes through the IdP end_session_endpoint; cross-site POST is refused', async (t) => {
  const s = await startStack(t);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const confirm = await get(`${s.url}/oauth2/sign_out`, jar, { accept: 'text/html' });
  assert.equal(confirm.status, 200);
  assert.match(confirm.body, /<form method="post"/);
  assert.equal((await get(`${s.url}/x`, jar)).status, 200, 'GET alone signs nobody out');

  for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { origin: 'null' }]) {
    const r = await request(`${s.url}/oauth2/sign_out`, { method: 'POST', headers: { ...headers, cookie: jar.header(s.url), 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
    await r.body.dump();
    assert.equal(r.statusCode, 403, JSON.stringify(headers));
    assert.equal(r.headers['set-cookie'], undefined, 'no cookie cleared cross-site');
  }
  assert.equal((await get(`${s.url}/x`, jar)).status, 200);

  const out = await request(`${s.url}/oauth2/sign_out`, { method: 'POST', headers: { origin: s.url, cookie: jar.header(s.url), 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await out.body.dump();
  assert.equal(out.statusCode, 303);
  const cleared = String(out.headers['set-cookie']);
  assert.match(cleared, /portcullis=;.*Max-Age=0/);
  const loc = new URL(String(out.headers.location));
  assert.equal(loc.origin, s.idp.issuer);
  assert.ok(loc.searchParams.get('id_token_hint'), 'id_token_hint sent');
  assert.equal(loc.searchParams.get('post_logout_redirect_uri'), `${s.url}/oauth2/signed_out`);
  const oldCookie = jar.header(s.url);
  jar.store(out.headers['set-cookie'], s.url);
  assert.equal((await get(`${s.url}/x`, jar)).status, 401);
  // Finish the IdP's logout page and land on our signed-out page.
  const end = await followRedirects(loc.href, jar);
  assert.equal(end.status, 200);
  assert.ok(oldCookie.length > 0);
});
