// Big sessions in the cookie store (issue 13, item 9): a user in 600 Active Directory groups signs
// in (claims compacted to what the configuration reads, the record compressed, the ID token left
// out when it would not fit); a session that truly cannot fit gets a page saying why and what the
// operator can do, not "502 Service problem", and is counted in portcullis_sessions_too_large_total.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { CookieJar, loginViaHttp } from '../helpers/browserless-login.js';
import { SESSION_VALUE_MAX } from '../../src/session/cookies.js';
import { adGroupNames, entraGroupIds } from './ad-groups.js';

const PASSWORD = 'carol-password';

/** A config that reads only `groups` and `email` (beyond the defaults): the "Done when". */
const ROUTES = [
  { name: 'finance', match: { path: '/finance' }, upstream: '{upstream}', allow: { claim: 'groups', contains: 'SG-Finance-Readers' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', allow: { claim: 'email', endsWith: '@example.com' } },
];

function userWithGroups(groups: string[]) {
  return {
    carol: { password: PASSWORD, claims: { email: 'carol@example.com', email_verified: true, name: 'Carol Example', preferred_username: 'carol', groups } },
  };
}

async function get(s: Stack, path: string, jar: CookieJar, headers: Record<string, string> = {}) {
  const url = `${s.url}${path}`;
  const r = await request(url, { headers: { accept: 'application/json', ...headers, cookie: jar.header(url) } });
  jar.store(r.headers['set-cookie'], url);
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

/** The session cookie's value as the browser holds it (joined from its chunks). */
function sessionValue(s: Stack, jar: CookieJar): string {
  const name = s.server.runtime.sessions.cookies.session;
  const whole = jar.get(name, s.url);
  if (whole !== undefined) return whole;
  let v = '';
  for (let i = 0; jar.get(`${name}_${i}`, s.url) !== undefined; i++) v += jar.get(`${name}_${i}`, s.url);
  return v;
}

test('a user in 600 AD groups signs in with the cookie store; rules, headers and userinfo see the groups', { timeout: 60_000 }, async (t) => {
  const groups = [...adGroupNames(599), 'SG-Finance-Readers'];
  const s = await startStack(t, { routes: ROUTES, idp: { users: userWithGroups(groups) } });
  const { status, jar } = await loginViaHttp(`${s.url}/finance/report`, { user: 'carol', password: PASSWORD });
  assert.equal(status, 200, 'back at the page she asked for');
  const value = sessionValue(s, jar);
  assert.ok(value.startsWith('v2.'), 'the session is compressed');
  assert.ok(value.length <= SESSION_VALUE_MAX, `${value.length} bytes of cookie`);
  assert.ok(JSON.stringify(groups).length > 2 * SESSION_VALUE_MAX, 'the groups alone are far larger than the cookie budget');

  // Requests after sign-in carry the whole cookie (no 431) and are authorized by the groups rule.
  assert.equal((await get(s, '/finance/x', jar)).status, 200);
  assert.equal((await get(s, '/other', jar)).status, 200);
  const info = JSON.parse((await get(s, '/oauth2/userinfo', jar)).body) as { groups: string[]; email: string };
  assert.deepEqual(info.groups, groups);
  assert.equal(info.email, 'carol@example.com');
  const last = s.upstream.requests.at(-1)!;
  assert.equal(last.headers['x-forwarded-email'], 'carol@example.com');
  assert.ok(String(last.headers['x-forwarded-groups']).startsWith(`${groups[0]},`), 'X-Forwarded-Groups (cut to the header budget)');

  // The session holds only the claims the configuration reads (and the session's own).
  const lookup = await s.server.runtime.sessions.lookup(Object.fromEntries(jar.names(s.url).map((n) => [n, jar.get(n, s.url)])));
  assert.equal(lookup.kind, 'valid');
  const keys = Object.keys(lookup.kind === 'valid' ? lookup.session.claims : {});
  for (const dropped of ['nonce', 'at_hash', 'c_hash']) assert.ok(!keys.includes(dropped), `${dropped} dropped`);
  for (const kept of ['sub', 'iss', 'aud', 'email', 'groups']) assert.ok(keys.includes(kept), `${kept} kept`);
});

test('with 600 groups the ID token is left out of the cookie, and sign-out still reaches the IdP (client_id instead of id_token_hint)', { timeout: 60_000 }, async (t) => {
  const s = await startStack(t, { routes: ROUTES, idp: { users: userWithGroups(adGroupNames(600)) } });
  const { jar } = await loginViaHttp(`${s.url}/`, { user: 'carol', password: PASSWORD });
  const url = `${s.url}/oauth2/sign_out`;
  const r = await request(url, { method: 'POST', headers: { cookie: jar.header(url), origin: s.url, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await r.body.text();
  assert.equal(r.statusCode, 303);
  const location = new URL(String(r.headers.location));
  assert.equal(location.origin, new URL(s.idp.issuer).origin, 'to the IdP\'s end-session endpoint');
  assert.equal(location.searchParams.get('client_id'), s.idp.clientId);
  assert.equal(location.searchParams.get('id_token_hint'), null);
});

test('a small session keeps its ID token (id_token_hint at sign-out), compressed or not', { timeout: 60_000 }, async (t) => {
  const s = await startStack(t, { routes: ROUTES, idp: { users: userWithGroups(['SG-Finance-Readers']) } });
  const { jar } = await loginViaHttp(`${s.url}/`, { user: 'carol', password: PASSWORD });
  const url = `${s.url}/oauth2/sign_out`;
  const r = await request(url, { method: 'POST', headers: { cookie: jar.header(url), origin: s.url, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await r.body.text();
  assert.ok(new URL(String(r.headers.location)).searchParams.get('id_token_hint'), 'id_token_hint sent');
});

test('a session that truly cannot fit: a clear 500 page (not a 502), no session cookie, counted in portcullis_sessions_too_large_total', { timeout: 60_000 }, async (t) => {
  // 3,000 Entra group object ids: random GUIDs barely compress, and a rule reads `groups`.
  const s = await startStack(t, { routes: ROUTES, idp: { users: userWithGroups(entraGroupIds(3000)) } });
  const r = await loginViaHttp(`${s.url}/finance/report`, { user: 'carol', password: PASSWORD });
  assert.equal(r.status, 500);
  assert.match(String(r.headers['content-type']), /text\/html/);
  assert.match(r.body, /too many group memberships/);
  assert.match(r.body, /session\.store: redis/);
  assert.match(r.body, /ERR_SESSION_TOO_LARGE/);
  assert.doesNotMatch(r.body, /unexpected answer|Sign in again/, 'neither blames the IdP nor offers a sign-in that would fail the same way');
  const name = s.server.runtime.sessions.cookies.session;
  assert.ok(!r.jar.names(s.url).some((n) => n === name || n.startsWith(`${name}_`)), 'no session cookie set');
  const metrics = await s.server.runtime.metrics.registry.metrics();
  assert.match(metrics, /portcullis_sessions_too_large_total\{when="sign_in"\} 1/);
  assert.match(metrics, /portcullis_logins_total\{result="ERR_SESSION_TOO_LARGE",provider="default"\} 1/);
  assert.ok(s.logs.some((l) => l.includes('ERR_SESSION_TOO_LARGE') && l.includes('3000 groups')), 'the operator\'s log says why');
});
