// A refresh replaces the session's claims with what the IdP says now — it does not merge them over
// the old ones. Many IdPs omit an emptied `groups` rather than send `[]`: a user taken out of
// `admin` at the IdP must lose the admin route at the next refresh, not at the absolute timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, freePort, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';
import { startRogueIdp } from '../helpers/rogue-idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { validateConfigObject, formatIssues } from '../../src/config/index.js';
import { startServer } from '../../src/server.js';
import { DEMO_USERS, type DevUser } from '../../dev/devidp/provider.js';

const ALICE = { user: 'alice', password: 'alice-password' };

async function get(url: string, jar: CookieJar) {
  const r = await request(url, { headers: { accept: 'application/json', cookie: jar.header(url) } });
  jar.store(r.headers['set-cookie'], url);
  return { status: r.statusCode, body: await r.body.text() };
}

for (const userinfo of [false, true]) {
  test(`refresh replaces claims${userinfo ? ' (oidc.userinfo on)' : ''}: the IdP drops groups between sign-in and refresh → the admin route is 403`, async (t) => {
    // The dev IdP reads an account's claims on every token it issues: editing them is "the IdP changed its mind".
    const users: Record<string, DevUser> = { alice: { password: DEMO_USERS.alice!.password, claims: { ...DEMO_USERS.alice!.claims, department: 'ops' } } };
    let offset = 0;
    const s = await startStack(t, {
      now: () => Date.now() + offset,
      idp: { users },
      edit: (raw) => { (raw.oidc as Record<string, unknown>).userinfo = userinfo; },
    });
    const grants: string[] = [];
    s.idp.provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => grants.push(String(ctx.oidc.params?.grant_type)));
    const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
    assert.equal((await get(`${s.url}/admin`, jar)).status, 200, 'an admin at sign-in');

    delete users.alice!.claims.groups;
    users.alice!.claims.name = 'Alice Renamed';
    offset += 2 * 3600_000; // the 1 h tokens are due: this request refreshes
    const r = await get(`${s.url}/admin`, jar);
    assert.deepEqual(grants.filter((g) => g === 'refresh_token'), ['refresh_token'], 'refreshed once');
    assert.equal(r.status, 403, 'groups are gone at the IdP: no admin any more');
    const info = JSON.parse((await get(`${s.url}/oauth2/userinfo`, jar)).body) as Record<string, unknown>;
    assert.equal(info.groups, undefined, 'no groups in the session');
    assert.equal(info.name, 'Alice Renamed', 'changed claims are the new values');
    assert.equal(info.sub, 'alice');
    assert.equal((await get(`${s.url}/x`, jar)).status, 200, 'still signed in');
    assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-groups'], undefined, 'identity headers use the new claims');
  });
}

test('refresh with oidc.userinfo: userinfo is read again and must name the same subject, or the session ends', async (t) => {
  const rogue = await startRogueIdp(t, {});
  const upstream = await startTestUpstream(t);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let offset = 0;
  const r = validateConfigObject({
    listen: { host: '127.0.0.1', port }, publicUrl: url, metrics: false, logLevel: 'warn', rateLimit: { signIn: 0 },
    oidc: { issuer: rogue.issuer, clientId: rogue.clientId, clientSecret: rogue.clientSecret, timeout: '3s', userinfo: true },
    session: { secrets: [TEST_SESSION_SECRET] },
    routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url, headers: { 'X-Dept': '{department}' } }],
  }, {});
  if (!r.ok) throw new Error(formatIssues(r.issues));
  const server = await startServer(r.config, { now: () => Date.now() + offset });
  t.after(() => server.close());
  await server.runtime.providers.waitReady(10_000);
  const jar = new CookieJar();
  assert.equal((await followRedirects(`${url}/start`, jar)).status, 200);
  assert.equal(upstream.requests.at(-1)!.headers['x-dept'], 'from-userinfo');
  rogue.userinfoSub = 'someone-else';
  offset += 3600_000;
  assert.equal((await get(`${url}/x`, jar)).status, 401, 'userinfo for another subject after a refresh ends the session');
  assert.equal(rogue.refreshes, 1);
});
