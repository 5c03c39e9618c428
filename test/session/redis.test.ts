// The Redis session store through the running proxy: a real redis-server started by the test,
// killed mid-session and restarted; replicas sharing it refresh once and share logouts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, generateKeyPairSync } from 'node:crypto';
import { SignJWT, importJWK, type JWK } from 'jose';
import { request } from 'undici';
import { Redis } from 'ioredis';
import { startStack } from '../helpers/stack.js';
import { startRedis } from '../helpers/redis.js';
import { loginViaHttp, CookieJar } from '../helpers/browserless-login.js';
import { until } from '../helpers/wait.js';
import { SESSION_CACHE_WINDOW_MS } from '../../src/session/sessions.js';

const ALICE = { user: 'alice', password: 'alice-password' };

async function get(url: string, jar: CookieJar, headers: Record<string, string> = { accept: 'application/json' }) {
  const r = await request(url, { headers: { ...headers, cookie: jar.header(url) } });
  const body = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body };
}


test('redis store: the cookie holds only a ticket; Redis down → 503 and the cookie is kept; recovers by itself', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  // Portcullis's clock, moved by hand past the in-memory cache's re-verification window below.
  let offset = 0;
  const s = await startStack(t, { now: () => Date.now() + offset, edit: (raw) => { Object.assign(raw.session as object, { store: 'redis', redis: { url: redis.url } }); } });
  await until('redis ready', 5000, async () => (await request(`${s.url}/readyz`)).statusCode === 200);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const cookie = jar.get('portcullis', s.url)!;
  assert.ok(cookie.length < 400, `a ticket, not a session (${cookie.length} chars)`);
  const raw = new Redis(redis.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  raw.on('error', () => {}); // it will see the kill below
  t.after(() => raw.disconnect());
  const keys = (await raw.keys('portcullis:*')).filter((k) => /^portcullis:[0-9a-f]{64}$/.test(k)); // session bodies, not the idx: entries
  assert.equal(keys.length, 1);
  const stored = await raw.getBuffer(keys[0]!);
  assert.ok(stored && !stored.toString('latin1').includes('alice'), 'Redis alone cannot read the session');
  assert.equal((await get(`${s.url}/x`, jar)).status, 200);

  await redis.stop();
  await until('readyz 503', 5000, async () => (await request(`${s.url}/readyz`)).statusCode === 503);
  assert.equal((await get(`${s.url}/x`, jar)).status, 200, 'within the cache window the session is served from memory');
  // Past the in-memory cache's re-verification window, requests need the store.
  offset += SESSION_CACHE_WINDOW_MS + 1;
  const down = await get(`${s.url}/x`, jar, { accept: 'text/html', 'sec-fetch-mode': 'navigate' });
  assert.equal(down.status, 503, 'a clear 503, not a redirect loop');
  assert.match(down.body, /session store/);
  assert.ok(down.headers['retry-after']);
  assert.equal(down.headers['set-cookie'], undefined, 'the cookie is kept');
  assert.equal((await get(`${s.url}/public/style.css`, jar)).status, 200, 'public routes keep serving, without identity');
  assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], undefined);

  await redis.start();
  await until('readyz 200 again', 10_000, async () => (await request(`${s.url}/readyz`)).statusCode === 200);
  // This redis-server keeps no data across restarts: the old session is gone, signing in works again.
  const after = await get(`${s.url}/x`, jar);
  assert.equal(after.status, 401);
  const again = await loginViaHttp(`${s.url}/`, { ...ALICE, jar: new CookieJar() });
  assert.equal(again.status, 200);
});

test('two replicas on one Redis refresh a session once', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const edit = (raw: Record<string, unknown>) => { Object.assign(raw.session as object, { store: 'redis', redis: { url: redis.url } }); };
  // 62 s tokens, due 12.4 s before they expire; the dev IdP and both proxies share this process's
  // Date.now(), moved by hand past that point.
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  t.after(() => { Date.now = realNow; });
  const a = await startStack(t, { edit, now: () => Date.now(), idp: { ttl: { AccessToken: 62, IdToken: 62 } } });
  const b = await startStack(t, { edit, now: () => Date.now(), existingIdp: a.idp });
  const { jar } = await loginViaHttp(`${a.url}/`, ALICE);
  const grants: string[] = [];
  a.idp.provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => grants.push(String(ctx.oidc.params?.grant_type)));
  offset += 51_000;
  const cookie = jar.header(a.url);
  const hit = (url: string) => request(`${url}/x`, { headers: { cookie, accept: 'application/json' } }).then(async (r) => { await r.body.dump(); return r.statusCode; });
  const statuses = await Promise.all([hit(a.url), hit(b.url), hit(a.url), hit(b.url), hit(b.url), hit(a.url)]);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200]);
  assert.deepEqual(grants, ['refresh_token'], 'one refresh across both replicas');
});

test('cookie sessions with a Redis URL share back-channel logouts between replicas', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const jwk = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'k', alg: 'RS256', use: 'sig' } as JWK;
  const edit = (raw: Record<string, unknown>) => { Object.assign(raw.session as object, { redis: { url: redis.url } }); };
  const a = await startStack(t, { edit, idp: { keys: { keys: [jwk] } } });
  const b = await startStack(t, { edit, existingIdp: a.idp });
  const { jar } = await loginViaHttp(`${a.url}/`, ALICE);
  const jarB = new CookieJar();
  jarB.set('portcullis', jar.get('portcullis', a.url)!, b.url);
  assert.equal((await get(`${b.url}/x`, jarB)).status, 200, 'cookie sessions work on any replica');
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ iss: a.idp.issuer, aud: a.idp.clientId, iat: now, jti: randomUUID(), sub: 'alice', events: { 'http://schemas.openid.net/event/backchannel-logout': {} } })
    .setProtectedHeader({ alg: 'RS256', kid: 'k' }).sign(await importJWK(jwk, 'RS256'));
  const r = await request(`${a.url}/oauth2/backchannel_logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `logout_token=${token}` });
  await r.body.dump();
  assert.equal(r.statusCode, 200);
  await until('replica B learns the revocation', 6000, async () => (await get(`${b.url}/x`, jarB)).status === 401);
  // The same token replayed at the other replica is refused there too.
  const replay = await request(`${b.url}/oauth2/backchannel_logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `logout_token=${token}` });
  await replay.body.dump();
  assert.equal(replay.statusCode, 400);
});
