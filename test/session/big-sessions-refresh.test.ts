// Big sessions at refresh (issue 13, item 9): the claims a refresh brings are compacted and the
// record compressed like at sign-in; a refresh whose claims no longer fit the cookie store is
// counted and the session goes on with its previous claims (no 502, no lost session).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { CookieJar, loginViaHttp } from '../helpers/browserless-login.js';
import { SESSION_VALUE_MAX } from '../../src/session/cookies.js';
import { adGroupNames, entraGroupIds } from './ad-groups.js';

const ROUTES = [
  { name: 'finance', match: { path: '/finance' }, upstream: '{upstream}', allow: { claim: 'groups', contains: 'SG-Finance-Readers' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', allow: { claim: 'email', endsWith: '@example.com' } },
];

async function get(s: Stack, path: string, jar: CookieJar) {
  const url = `${s.url}${path}`;
  const r = await request(url, { headers: { accept: 'application/json', cookie: jar.header(url) } });
  jar.store(r.headers['set-cookie'], url);
  return { status: r.statusCode, body: await r.body.text() };
}

/** Signs carol in with a few groups, then gives her `later` at the IdP and moves time to her refresh. */
async function refreshedWith(t: Parameters<typeof startStack>[0], later: string[]) {
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  t.after(() => { Date.now = realNow; });
  const claims: Record<string, unknown> = { email: 'carol@example.com', email_verified: true, name: 'Carol', preferred_username: 'carol', groups: ['SG-Finance-Readers'] };
  const s = await startStack(t, { routes: ROUTES, now: () => Date.now(), idp: { ttl: { AccessToken: 62, IdToken: 62 }, users: { carol: { password: 'carol-password', claims } } } });
  const { jar, status } = await loginViaHttp(`${s.url}/finance/a`, { user: 'carol', password: 'carol-password' });
  assert.equal(status, 200);
  const grants: string[] = [];
  s.idp.provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => grants.push(String(ctx.oidc.params?.grant_type)));
  claims.groups = later;
  offset += 55_000; // within the refresh margin (20 % of 62 s), before expiry
  return { s, jar, grants };
}

test('a refresh that brings 600 groups is compacted and compressed into the cookie store', { timeout: 60_000 }, async (t) => {
  const groups = [...adGroupNames(599), 'SG-Finance-Readers'];
  const { s, jar, grants } = await refreshedWith(t, groups);
  assert.equal((await get(s, '/finance/b', jar)).status, 200);
  assert.deepEqual(grants, ['refresh_token']);
  const info = JSON.parse((await get(s, '/oauth2/userinfo', jar)).body) as { groups: string[] };
  assert.equal(info.groups.length, 600, 'the refreshed claims are in the session');
  const name = s.server.runtime.sessions.cookies.session;
  const value = jar.get(name, s.url) ?? [0, 1, 2].map((i) => jar.get(`${name}_${i}`, s.url) ?? '').join('');
  assert.ok(value.startsWith('v2.') && value.length <= SESSION_VALUE_MAX, `${value.length} bytes`);
  const lookup = await s.server.runtime.sessions.lookup(Object.fromEntries(jar.names(s.url).map((n) => [n, jar.get(n, s.url)])));
  assert.equal(lookup.kind, 'valid');
  const keys = Object.keys(lookup.kind === 'valid' ? lookup.session.claims : {});
  assert.ok(!keys.includes('at_hash') && !keys.includes('nonce'), `compacted at refresh too: ${keys.join(',')}`);
});

test('a refresh whose claims no longer fit: counted (when="refresh"), the session goes on with its previous claims', { timeout: 60_000 }, async (t) => {
  const { s, jar, grants } = await refreshedWith(t, entraGroupIds(3000));
  const r = await get(s, '/finance/b', jar);
  assert.equal(r.status, 200, 'served with the previous claims, not a 502');
  assert.deepEqual(grants, ['refresh_token']);
  const info = JSON.parse((await get(s, '/oauth2/userinfo', jar)).body) as { groups: string[] };
  assert.deepEqual(info.groups, ['SG-Finance-Readers']);
  const metrics = await s.server.runtime.metrics.registry.metrics();
  assert.match(metrics, /portcullis_sessions_too_large_total\{when="refresh"\} 1/);
});
