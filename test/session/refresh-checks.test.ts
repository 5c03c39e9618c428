// What a refresh must prove, and userinfo's subject check, against a misbehaving IdP: a refreshed
// ID token for another subject, audience or authorized party ends the session; invalid_grant ends
// it; an IdP error keeps it. Userinfo for another subject refuses the sign-in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { validateConfigObject, formatIssues } from '../../src/config/index.js';
import { startServer } from '../../src/server.js';
import { freePort, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { startRogueIdp, type RefreshMode } from '../helpers/rogue-idp.js';
import { CookieJar, followRedirects } from '../helpers/browserless-login.js';
import type { CleanupScope } from '../helpers/idp.js';

async function rogueStack(t: CleanupScope, opts: { userinfo?: boolean } = {}) {
  const rogue = await startRogueIdp(t, {});
  const upstream = await startTestUpstream(t);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let offset = 0;
  const r = validateConfigObject({
    listen: { host: '127.0.0.1', port }, publicUrl: url, metrics: false, logLevel: 'warn', rateLimit: { signIn: 0 },
    oidc: { issuer: rogue.issuer, clientId: rogue.clientId, clientSecret: rogue.clientSecret, timeout: '3s', userinfo: opts.userinfo ?? false },
    session: { secrets: [TEST_SESSION_SECRET] },
    routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url, headers: { 'X-Dept': '{department}' } }],
  }, {});
  if (!r.ok) throw new Error(formatIssues(r.issues));
  const server = await startServer(r.config, { now: () => Date.now() + offset });
  t.after(() => server.close());
  await server.runtime.providers.waitReady(10_000);
  return { rogue, upstream, url, advance: (ms: number) => { offset += ms; } };
}

async function api(url: string, jar: CookieJar) {
  const r = await request(url, { headers: { accept: 'application/json', cookie: jar.header(url) } });
  jar.store(r.headers['set-cookie'], url);
  await r.body.dump();
  return r.statusCode;
}

const cases: Array<[RefreshMode, number, string]> = [
  ['valid', 200, 'a consistent refresh keeps the session'],
  ['server-error', 200, 'an IdP error keeps the session (retried later)'],
  ['other-sub', 401, 'a refreshed ID token for another subject ends the session'],
  ['other-aud', 401, 'a refreshed ID token for another audience ends the session'],
  ['new-azp', 401, 'a refreshed ID token with a new authorized party ends the session'],
  ['invalid_grant', 401, 'invalid_grant ends the session'],
];

for (const [mode, expected, what] of cases) {
  test(`refresh: ${what}`, async (t) => {
    const s = await rogueStack(t);
    const jar = new CookieJar();
    const login = await followRedirects(`${s.url}/start`, jar);
    assert.equal(login.status, 200, 'signed in');
    s.rogue.refreshMode = mode;
    s.advance(3600_000); // the 1 h tokens are now due
    assert.equal(await api(`${s.url}/x`, jar), expected);
    assert.equal(s.rogue.refreshes, 1, 'exactly one refresh attempt');
    if (expected === 200) assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'rogue-user');
  });
}

test('userinfo: claims are merged; a userinfo answer for another subject refuses the sign-in', async (t) => {
  const s = await rogueStack(t, { userinfo: true });
  const ok = await followRedirects(`${s.url}/a`, new CookieJar());
  assert.equal(ok.status, 200);
  const seen = s.upstream.requests.at(-1)!;
  assert.equal(seen.headers['x-forwarded-user'], 'rogue-user');
  assert.equal(seen.headers['x-dept'], 'from-userinfo', 'a userinfo-only claim reached the header template');
  s.rogue.userinfoSub = 'someone-else';
  const jar = new CookieJar();
  const bad = await followRedirects(`${s.url}/b`, jar);
  assert.equal(bad.status, 401);
  assert.match(bad.body, /inconsistent user information/);
  assert.ok(!jar.names(s.url).includes('portcullis'), 'no session issued');
});
