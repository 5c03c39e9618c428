// Sign-out ends the session everywhere, whichever store holds it: a copy of the session cookie
// taken before POST /oauth2/sign_out (another tab, a shared or stolen cookie) is refused afterwards
// by the proxy and by /oauth2/userinfo — on this replica, on other replicas sharing Redis, and on
// every worker of a `workers: N` process. A refused refresh (invalid_grant) ends it the same way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, freePort, type Stack } from '../helpers/stack.js';
import { startRedis } from '../helpers/redis.js';
import { startTestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { CookieJar, loginViaHttp } from '../helpers/browserless-login.js';
import type { ActiveSession } from '../../src/session/sessions.js';
import { alive, configFile, get as rawGet, processConfig, spawnPortcullis, PROCESS_START_MS, waitFor, type LogLine } from '../operability/support.js';
import { until } from '../helpers/wait.js';

const ALICE = { user: 'alice', password: 'alice-password' };

async function get(url: string, cookie: string, headers: Record<string, string> = { accept: 'application/json' }) {
  const r = await request(url, { headers: { ...headers, cookie } });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

async function signOut(base: string, cookie: string): Promise<void> {
  const r = await request(`${base}/oauth2/sign_out`, { method: 'POST', headers: { origin: base, cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await r.body.dump();
  assert.equal(r.statusCode, 303);
  assert.match(String(r.headers['set-cookie']), /portcullis=;.*Max-Age=0/, 'the browser\'s cookie is expired');
}


/** The copy is refused everywhere a session is accepted: API 401, navigation back to the IdP, userinfo 401. */
async function assertRefused(s: { url: string; idp: { issuer: string } }, copy: string, what: string): Promise<void> {
  assert.equal((await get(`${s.url}/x`, copy)).status, 401, `${what}: proxied API request`);
  const nav = await get(`${s.url}/x`, copy, { accept: 'text/html', 'sec-fetch-mode': 'navigate' });
  assert.equal(nav.status, 302, `${what}: navigation`);
  assert.match(String(nav.headers.location), new RegExp(`^${s.idp.issuer}`));
  assert.equal((await get(`${s.url}/oauth2/userinfo`, copy)).status, 401, `${what}: /oauth2/userinfo`);
}

async function copiedCookieAfterSignOut(s: Stack): Promise<string> {
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const copy = jar.header(s.url);
  assert.equal((await get(`${s.url}/x`, copy)).status, 200, 'signed in');
  assert.equal((await get(`${s.url}/oauth2/userinfo`, copy)).status, 200);
  await signOut(s.url, copy);
  return copy;
}

test('cookie store: a copy of the session cookie taken before sign-out is refused afterwards', async (t) => {
  const s = await startStack(t);
  const copy = await copiedCookieAfterSignOut(s);
  await assertRefused(s, copy, 'cookie store');
  const revoked = s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit === true && l.action === 'revoke');
  assert.deepEqual(revoked.map((l) => [l.via, l.outcome]), [['sign_out', 'revoked']], 'the sign-out is audited once');
  // Without the session cache, too: the copy is opened afresh and still refused.
  const uncached = await startStack(t, { sessionCache: false });
  await assertRefused(uncached, await copiedCookieAfterSignOut(uncached), 'cookie store, no cache');
  // Signing in again afterwards works: the new session has a new id.
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  assert.equal((await get(`${s.url}/x`, jar.header(s.url))).status, 200);
});

test('redis store: a copy of the session cookie taken before sign-out is refused afterwards', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const s = await startStack(t, { edit: (raw) => { Object.assign(raw.session as object, { store: 'redis', redis: { url: redis.url } }); } });
  await until('redis ready', 5000, async () => (await request(`${s.url}/readyz`).then(async (r) => { await r.body.dump(); return r.statusCode; })) === 200);
  await assertRefused(s, await copiedCookieAfterSignOut(s), 'redis store');
});

test('cookie sessions with a Redis URL: a sign-out at one replica is refused at the other', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const edit = (raw: Record<string, unknown>) => { Object.assign(raw.session as object, { redis: { url: redis.url } }); };
  const a = await startStack(t, { edit });
  const b = await startStack(t, { edit, existingIdp: a.idp });
  await until('redis ready', 5000, async () => a.server.runtime.redis!.healthy() && b.server.runtime.redis!.healthy());
  const { jar } = await loginViaHttp(`${a.url}/`, ALICE);
  const jarB = new CookieJar();
  jarB.set('portcullis', jar.get('portcullis', a.url)!, b.url);
  const copyB = jarB.header(b.url);
  assert.equal((await get(`${b.url}/x`, copyB)).status, 200, 'cookie sessions work on any replica (and B has it cached)');
  await signOut(a.url, jar.header(a.url));
  await assertRefused(a, jar.header(a.url), 'replica A');
  // B pulls the shared revocation list every REVOCATION_SYNC_MS.
  await until('replica B learns the sign-out', 6000, async () => (await get(`${b.url}/x`, copyB)).status === 401);
  await assertRefused(b, copyB, 'replica B');
});

test('a refused refresh (invalid_grant) ends every copy of the cookie: no second refresh attempt', async (t) => {
  let offset = 0;
  const s = await startStack(t, { now: () => Date.now() + offset });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const copy = jar.header(s.url);
  // Revoke the refresh token at the IdP: the next refresh gets invalid_grant.
  const cookies = { portcullis: jar.get('portcullis', s.url) };
  const lookup = await s.server.runtime.sessions.lookup(cookies);
  assert.equal(lookup.kind, 'valid');
  const record = await s.server.runtime.sessions.record((lookup as { session: ActiveSession }).session, cookies);
  const rv = await request(`${s.idp.issuer}/token/revocation`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${s.idp.clientId}:${s.idp.clientSecret}`).toString('base64')}` },
    body: new URLSearchParams({ token: record!.refreshToken!, token_type_hint: 'refresh_token' }).toString(),
  });
  await rv.body.dump();
  offset += 2 * 3600_000; // the 1 h tokens are due
  const refused = async () => (await s.server.runtime.metrics.refresh.get()).values.find((v) => v.labels.result === 'invalid_grant')?.value ?? 0;
  assert.equal((await get(`${s.url}/x`, copy)).status, 401, 'the refresh is refused: the session ends');
  assert.equal(await refused(), 1);
  await assertRefused(s, copy, 'after a refused refresh');
  assert.equal(await refused(), 1, 'the copy is refused from the revocation list, not by asking the IdP again');
});

test('workers: 2 — a sign-out handled by one worker is refused by every worker', async (t) => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const idp = await startTestIdp(t, { redirectUris: [`${base}/oauth2/callback`], postLogoutRedirectUris: [`${base}/oauth2/signed_out`] });
  const upstream = await startTestUpstream(t);
  const file = configFile(t, processConfig({
    port, metricsPort: await freePort(), issuer: idp.issuer,
    routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url }],
    extra: { workers: 2, shutdownGracePeriod: '2s' },
  }));
  const p = spawnPortcullis(t, file.path);
  const workerPids = () => new Set(p.logs.filter((l: LogLine) => l.msg === 'portcullis listening').map((l) => l.pid!));
  t.after(() => { for (const pid of workerPids()) if (alive(pid)) process.kill(pid, 'SIGKILL'); });
  await waitFor(() => workerPids().size === 2, PROCESS_START_MS, 'two workers listening');

  const { jar } = await loginViaHttp(`${base}/`, ALICE);
  const copy = jar.header(base);
  // Every worker has served (and cached) the session before the sign-out.
  const servedBy = () => new Set(p.logs.filter((l) => l.audit === true && l.decision === 'allow').map((l) => l.pid));
  await waitFor(async () => {
    assert.equal((await rawGet(`${base}/warm`, { accept: 'application/json', cookie: copy })).status, 200);
    return servedBy().size === 2;
  }, 10_000, 'both workers to serve the session');

  await signOut(base, copy);
  await p.waitForLog((l) => l.msg === 'signed out');
  // Batches of new connections (the primary deals them out) until a whole batch is refused and both
  // workers' refusals are in the log — their lines reach the primary's stdout a moment after the
  // answers, so one look right after a batch could miss the second worker's.
  const refusedBy = () => new Set(p.logs.filter((l) => l.audit === true && l.decision !== undefined && l.decision !== 'allow').map((l) => l.pid));
  await waitFor(async () => {
    const statuses = await Promise.all(Array.from({ length: 8 }, (_, i) => rawGet(`${base}/gone/${i}`, { accept: 'application/json', cookie: copy }).then((x) => x.status)));
    return statuses.every((st) => st === 401) && refusedBy().size === 2;
  }, 10_000, 'the signed-out session to be refused by every worker (both workers refusing it)');
  assert.equal(refusedBy().size, 2, 'both workers refused the copy');
  p.signal('SIGTERM');
  await waitFor(() => p.exited, 15_000, 'primary exit');
});
