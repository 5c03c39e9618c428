// Limits: the per-client-IP sign-in rate limit (a token bucket on /oauth2/start and /oauth2/callback)
// and the request header size bound (431, never a crash).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { clientKey, createRateLimiter } from '../../src/ratelimit.js';
import { rawSocket } from '../security/support.js';

const NAVIGATION = { accept: 'text/html', 'sec-fetch-mode': 'navigate' };

async function hit(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

test('token bucket: a burst, then one token every 60/N seconds; buckets per key; 0 disables', () => {
  let now = 1_000_000;
  const limiter = createRateLimiter(6, { now: () => now })!;
  for (let i = 0; i < 6; i++) assert.deepEqual(limiter.take('a'), { ok: true }, `burst ${i}`);
  assert.deepEqual(limiter.take('a'), { ok: false, retryAfterSec: 10 });
  assert.deepEqual(limiter.take('b'), { ok: true }, 'another client has its own bucket');
  now += 9_000;
  assert.deepEqual(limiter.take('a'), { ok: false, retryAfterSec: 1 });
  now += 1_000;
  assert.deepEqual(limiter.take('a'), { ok: true }, 'one token back after 10 s');
  assert.equal(limiter.take('a').ok, false);
  now += 3_600_000;
  for (let i = 0; i < 6; i++) assert.equal(limiter.take('a').ok, true, 'full again after a quiet hour, never more than the burst');
  assert.equal(limiter.take('a').ok, false);
  assert.equal(createRateLimiter(0), undefined);
});

test('client keys: IPv4 as is (also IPv4-mapped), IPv6 by /64', () => {
  assert.equal(clientKey('192.0.2.7'), '192.0.2.7');
  assert.equal(clientKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(clientKey('2001:db8:1:2:aaaa::1'), clientKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'));
  assert.notEqual(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'));
  assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(clientKey(undefined), 'unknown');
});

test('sign-in endpoints: 429 with Retry-After and the normal page/JSON past rateLimit.signIn per minute; per client IP', async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.rateLimit = { signIn: 3 }; raw.trustProxy = ['127.0.0.1']; } });
  for (let i = 0; i < 3; i++) assert.equal((await hit(`${s.url}/oauth2/start?rd=/`, NAVIGATION)).status, 302, `start ${i}`);
  const page = await hit(`${s.url}/oauth2/start?rd=/`, NAVIGATION);
  assert.equal(page.status, 429);
  const retry = Number(page.headers['retry-after']);
  assert.ok(retry >= 1 && retry <= 20, `Retry-After ${page.headers['retry-after']}`);
  assert.match(String(page.headers['content-type']), /text\/html/);
  assert.match(page.body, /Too many sign-in attempts/);
  const json = await hit(`${s.url}/oauth2/start`, { accept: 'application/json' });
  assert.equal(json.status, 429);
  assert.equal(JSON.parse(json.body).error, 'ERR_RATE_LIMITED');

  // Another client (behind the trusted proxy) is not affected.
  assert.equal((await hit(`${s.url}/oauth2/start?rd=/`, { ...NAVIGATION, 'x-forwarded-for': '198.51.100.9' })).status, 302);
  // The callback has its own bucket.
  for (let i = 0; i < 3; i++) assert.equal((await hit(`${s.url}/oauth2/callback?state=x&code=y`, NAVIGATION)).status, 400, `callback ${i}`);
  assert.equal((await hit(`${s.url}/oauth2/callback?state=x&code=y`, NAVIGATION)).status, 429);
  // Proxied routes and health checks are never limited.
  for (let i = 0; i < 5; i++) assert.equal((await hit(`${s.url}/healthz`)).status, 200);

  const metrics = await (await request(`${s.server.metricsUrl}/metrics`)).body.text();
  assert.match(metrics, /portcullis_rate_limited_total\{endpoint="start"\} 2/);
  assert.match(metrics, /portcullis_rate_limited_total\{endpoint="callback"\} 1/);
});

test('rateLimit.signIn: 0 turns the limit off; a normal sign-in is far below the default', async (t) => {
  const off = await startStack(t, { edit: (raw) => { raw.rateLimit = { signIn: 0 }; } });
  for (let i = 0; i < 40; i++) assert.equal((await hit(`${off.url}/oauth2/start`, NAVIGATION)).status, 302);
  const s = await startStack(t, { edit: (raw) => { delete raw.rateLimit; } });
  assert.equal(s.config.rateLimit.signIn, 30, 'the default');
  for (let i = 0; i < 3; i++) assert.equal((await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' })).status, 200);
});

test('an oversized Cookie header gets 431, not a crash; a large one within the bound is just "no session"', async (t) => {
  const s = await startStack(t);
  const port = Number(new URL(s.url).port);
  const huge = `portcullis=${'A'.repeat(20 * 1024)}`;
  const answer = await rawSocket(port, `GET /x HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: application/json\r\nCookie: ${huge}\r\n\r\n`);
  assert.match(answer, /^HTTP\/1\.1 431 /);
  // Many chunk cookies, each within limits, all garbage: no session, a 401 — and still serving.
  const chunks = Array.from({ length: 10 }, (_, i) => `portcullis_${i}=${'B'.repeat(1200)}`).join('; ');
  const r = await hit(`${s.url}/x`, { accept: 'application/json', cookie: `portcullis=2; ${chunks}` });
  assert.equal(r.status, 401);
  assert.equal((await hit(`${s.url}/healthz`)).status, 200);
  assert.equal((await hit(`${s.url}/public/x`, { accept: 'application/json' })).status, 200);
});
