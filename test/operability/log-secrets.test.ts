// No secrets in logs: a full sign-in, refresh, API calls with credentials and sign-out at
// logLevel: trace, then every captured log line is searched for every secret the run handled —
// cookie values, the client secret, the session secret, ID/access/refresh tokens (before and after
// the refresh), the authorization code and Authorization header values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import type { ActiveSession } from '../../src/session/sessions.js';

test('a full session at logLevel trace leaves no cookie, token, secret or Authorization value in any log line', async (t) => {
  const s = await startStack(t, {
    idp: { ttl: { AccessToken: 62, IdToken: 62 } },
    edit: (raw) => { raw.logLevel = 'trace'; },
  });
  const secrets = new Map<string, string>([
    ['client secret', TEST_CLIENT_SECRET],
    ['session secret', TEST_SESSION_SECRET],
    ['token endpoint Basic credentials', Buffer.from(`${s.idp.clientId}:${TEST_CLIENT_SECRET}`).toString('base64')],
  ]);
  const rt = s.server.runtime;
  const remember = async (label: string, cookieHeader: string) => {
    for (const part of cookieHeader.split(/;\s*/)) {
      const [name, value = ''] = part.split('=');
      if (value.length >= 16) secrets.set(`${label} cookie ${name}`, value);
    }
    const cookies = Object.fromEntries(cookieHeader.split(/;\s*/).map((p) => p.split('=') as [string, string]));
    const lookup = await rt.sessions.lookup(cookies);
    assert.equal(lookup.kind, 'valid', `${label}: a live session`);
    const record = await rt.sessions.record((lookup as { session: ActiveSession }).session, cookies);
    assert.ok(record?.idToken && record.accessToken && record.refreshToken, `${label}: tokens in the session`);
    secrets.set(`${label} ID token`, record.idToken);
    secrets.set(`${label} ID token signature`, record.idToken.split('.')[2]!);
    secrets.set(`${label} access token`, record.accessToken);
    secrets.set(`${label} refresh token`, record.refreshToken);
  };

  const login = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' });
  assert.equal(login.status, 200);
  const callback = login.hops.find((h) => h.url.startsWith(`${s.url}/oauth2/callback`));
  const code = callback && new URL(callback.url).searchParams.get('code');
  assert.ok(code, 'the authorization code');
  secrets.set('authorization code', code);
  await remember('first', login.jar.header(s.url));

  // API calls carrying credentials of their own: they must not be echoed either.
  const bearer = 'Bearer client-sent-credential-0123456789abcdef';
  secrets.set('client Authorization header', bearer.slice(7));
  for (const path of ['/x', '/admin/y', '/public/z']) {
    const r = await request(`${s.url}${path}`, { headers: { accept: 'application/json', authorization: bearer, cookie: login.jar.header(s.url), 'proxy-authorization': bearer } });
    await r.body.dump();
  }
  await (await request(`${s.url}/x`, { headers: { accept: 'application/json', authorization: bearer } })).body.dump();

  // Refresh (tokens expire within the refresh margin a second after sign-in).
  await new Promise((r) => setTimeout(r, 2100));
  const refreshed = await request(`${s.url}/after-refresh`, { headers: { accept: 'application/json', cookie: login.jar.header(s.url) } });
  login.jar.store(refreshed.headers['set-cookie'], s.url);
  await refreshed.body.dump();
  assert.equal(refreshed.statusCode, 200);
  assert.ok(s.logs.length > 0);
  await remember('refreshed', login.jar.header(s.url));
  assert.notEqual(secrets.get('first access token'), secrets.get('refreshed access token'), 'a refresh happened');

  // A tampered cookie, a bad callback, sign-out.
  await (await request(`${s.url}/x`, { headers: { accept: 'application/json', cookie: `portcullis=${secrets.get('first ID token')!.slice(0, 60)}` } })).body.dump();
  await (await request(`${s.url}/oauth2/callback?code=${code}&state=forged`, { headers: { cookie: login.jar.header(s.url) } })).body.dump();
  const out = await request(`${s.url}/oauth2/sign_out`, { method: 'POST', headers: { origin: s.url, cookie: login.jar.header(s.url), 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await out.body.dump();
  assert.equal(out.statusCode, 303);

  assert.ok(s.logs.some((l) => l.includes('"level":10') || l.includes('"level":20')), 'trace/debug lines were written');
  assert.ok(s.logs.some((l) => l.includes('signed in')) && s.logs.some((l) => l.includes('signed out')));
  const leaks: string[] = [];
  for (const [what, value] of secrets) {
    for (const line of s.logs) if (line.includes(value)) leaks.push(`${what} in: ${line.slice(0, 300)}`);
  }
  assert.deepEqual(leaks, [], `secrets in ${leaks.length} log line(s)`);
});
