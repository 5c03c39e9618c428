// Back-channel logout while the shared store fails (issue 13 item 11): a logout token is marked used
// only once its revocation is stored. Redis down → 503 (the IdP retries), never 502
// ERR_IDP_BAD_RESPONSE and never, on the retry, 400 "already used"; once Redis is back the retry
// is served and every replica refuses the session.
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

const ALICE = { user: 'alice', password: 'alice-password' };
const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} };

async function status(url: string, jar: CookieJar): Promise<number> {
  const r = await request(url, { headers: { accept: 'application/json', cookie: jar.header(url) } });
  await r.body.dump();
  return r.statusCode;
}

async function deliver(url: string, token: string) {
  const r = await request(`${url}/oauth2/backchannel_logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `logout_token=${token}` });
  return { status: r.statusCode, retryAfter: r.headers['retry-after'], body: await r.body.text() };
}


/** Two replicas with cookie sessions sharing revocations (and logout-token ids) through one Redis. */
async function replicas(t: Parameters<typeof startStack>[0], redisUrl: string) {
  const jwk = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'k', alg: 'RS256', use: 'sig' } as JWK;
  const edit = (raw: Record<string, unknown>) => { Object.assign(raw.session as object, { redis: { url: redisUrl } }); };
  const a = await startStack(t, { edit, idp: { keys: { keys: [jwk] } } });
  const b = await startStack(t, { edit, existingIdp: a.idp });
  for (const s of [a, b]) await until('ready', 10_000, async () => (await request(`${s.url}/readyz`)).statusCode === 200);
  const { jar } = await loginViaHttp(`${a.url}/`, ALICE);
  const jarB = new CookieJar();
  jarB.set('portcullis', jar.get('portcullis', a.url)!, b.url);
  assert.equal(await status(`${a.url}/x`, jar), 200);
  assert.equal(await status(`${b.url}/x`, jarB), 200, 'cookie sessions work on any replica');
  const key = await importJWK(jwk, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ iss: a.idp.issuer, aud: a.idp.clientId, iat: now, jti: randomUUID(), sub: 'alice', events: EVENT })
    .setProtectedHeader({ alg: 'RS256', kid: 'k', typ: 'logout+jwt' }).sign(key);
  return { a, b, jar, jarB, token };
}

test('back-channel logout while Redis is down: 503 (not marked used), the retry after Redis is back → 200 and every replica refuses the session', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const { a, b, jarB, token } = await replicas(t, redis.url);

  await redis.stop();
  await until('replica A sees the outage', 5000, async () => (await request(`${a.url}/readyz`)).statusCode === 503);
  const first = await deliver(a.url, token);
  assert.equal(first.status, 503, `a store failure asks the IdP to retry: ${first.body}`);
  assert.ok(first.retryAfter, 'with Retry-After');
  assert.match(first.body, /ERR_LOGOUT_STORE_UNAVAILABLE/);
  assert.doesNotMatch(first.body, /ERR_IDP/, 'not blamed on the IdP');

  await redis.start();
  for (const s of [a, b]) await until('ready again', 15_000, async () => (await request(`${s.url}/readyz`)).statusCode === 200);
  const retry = await deliver(a.url, token);
  assert.equal(retry.status, 200, `the IdP's retry is served, not refused as a replay: ${retry.body}`);
  await until('replica B refuses the session', 8000, async () => (await status(`${b.url}/x`, jarB)) === 401);
  // Replay protection still holds once the logout is stored, on either replica.
  assert.equal((await deliver(a.url, token)).status, 400);
  assert.equal((await deliver(b.url, token)).status, 400);
});

test('back-channel logout whose revocation write fails (a Redis error on the revocation key): 503 ERR_LOGOUT_STORE_UNAVAILABLE, never 502 ERR_IDP_BAD_RESPONSE; the retry is served', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const { a, b, jar, jarB, token } = await replicas(t, redis.url);
  // The shared revocation hash made unwritable (WRONGTYPE), as a failing shard would be: the
  // logout-token id can be checked and written, the revocation cannot.
  const raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  raw.on('error', () => {});
  t.after(() => raw.disconnect());
  await raw.del('portcullis:revoked');
  await raw.set('portcullis:revoked', 'not a hash');

  const first = await deliver(a.url, token);
  assert.equal(first.status, 503, `a store error is answered 503: ${first.body}`);
  assert.match(first.body, /ERR_LOGOUT_STORE_UNAVAILABLE/);
  assert.doesNotMatch(first.body, /ERR_IDP_BAD_RESPONSE/);
  assert.equal(await status(`${a.url}/x`, jar), 401, 'ended at once on the replica that received it');
  assert.ok(a.logs.some((l) => l.includes('ERR_LOGOUT_STORE_UNAVAILABLE') && l.includes('WRONGTYPE')), 'the store error is logged as such');

  await raw.del('portcullis:revoked');
  const retry = await deliver(a.url, token);
  assert.equal(retry.status, 200, `the IdP's retry is served: ${retry.body}`);
  await until('replica B refuses the session', 8000, async () => (await status(`${b.url}/x`, jarB)) === 401);
  assert.equal((await deliver(b.url, token)).status, 400, 'and the token is now used everywhere');
});
