// When a refresh is due: 20 % of the token's lifetime before it expires, within [5 s, 60 s] — so a
// 60 s access token (common in hardened IdPs) is refreshed once per lifetime, not on every request —
// and never more than once per 5 s for one session, whatever lifetimes the IdP hands out.
//
// The dev IdP and the proxy run in this process; both read Date.now(), which the test moves by hand
// (no sleeping), so the tokens' `exp` and the proxy's clock agree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { CookieJar, loginViaHttp } from '../helpers/browserless-login.js';
import { refreshMargin, REFRESH_MIN_INTERVAL_MS } from '../../src/session/refresh.js';
import { processClock } from '../helpers/clock.js';

const ALICE = { user: 'alice', password: 'alice-password' };


async function get(url: string, jar: CookieJar) {
  const r = await request(url, { headers: { accept: 'application/json', cookie: jar.header(url) }, reset: true });
  jar.store(r.headers['set-cookie'], url);
  await r.body.dump();
  return r.statusCode;
}

test('refresh margin: 20 % of the lifetime, at least 5 s, at most 60 s; 60 s for records without an issue time', () => {
  assert.equal(refreshMargin(0, 3600_000), 60_000);
  assert.equal(refreshMargin(0, 300_000), 60_000);
  assert.equal(refreshMargin(0, 60_000), 12_000);
  assert.equal(refreshMargin(0, 10_000), 5_000);
  assert.equal(refreshMargin(0, 3_000), 5_000);
  assert.equal(refreshMargin(5_000, 5_000), 5_000, 'expired on arrival');
  assert.equal(refreshMargin(undefined, 60_000), 60_000, 'older records: the former fixed margin');
});

test('60 s tokens: requests every 3 s for three lifetimes cause exactly one refresh per lifetime, each before expiry', async (t) => {
  const clock = processClock(t);
  const s = await startStack(t, { now: clock.now, idp: { ttl: { AccessToken: 60, IdToken: 60 } } });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const start = clock.elapsed();
  const refreshedAt: number[] = [];
  s.idp.provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') refreshedAt.push(clock.elapsed() - start);
  });
  for (let i = 0; i < 60; i++) {
    clock.advance(3_000);
    assert.equal(await get(`${s.url}/x/${i}`, jar), 200, `request at +${(i + 1) * 3} s`);
  }
  // Due 12 s before each 60 s token expires: at +48 s, then 48 s after each refresh.
  assert.deepEqual(refreshedAt, [48_000, 96_000, 144_000], `refreshes at ${refreshedAt.map((x) => x / 1000).join(', ')} s`);
  const metric = (await s.server.runtime.metrics.refresh.get()).values.find((v) => v.labels.result === 'success')?.value;
  assert.equal(metric, 3, 'portcullis_session_refresh_total{result="success"}');
});

test('tokens shorter than the minimum margin: one session is refreshed at most once per 5 s', async (t) => {
  const clock = processClock(t);
  // 3 s tokens are always within the 5 s minimum margin: without the interval, every request would refresh.
  const s = await startStack(t, { now: clock.now, idp: { ttl: { AccessToken: 3, IdToken: 3 } } });
  const start = clock.elapsed();
  const refreshedAt: number[] = [];
  s.idp.provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: string } } }) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') refreshedAt.push(clock.elapsed() - start);
  });
  // The sign-in ends with a proxied request, which already finds the 3 s token due: refresh at +0 s.
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  for (let i = 0; i < 30; i++) {
    clock.advance(1_000);
    // A few concurrent requests each second: they share a refresh or skip one, never add one.
    const statuses = await Promise.all([get(`${s.url}/a/${i}`, jar), get(`${s.url}/b/${i}`, jar), get(`${s.url}/c/${i}`, jar)]);
    assert.deepEqual(statuses, [200, 200, 200]);
  }
  assert.deepEqual(refreshedAt, [0, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000], `refreshes at ${refreshedAt.map((x) => x / 1000).join(', ')} s`);
  for (let i = 1; i < refreshedAt.length; i++) assert.ok(refreshedAt[i]! - refreshedAt[i - 1]! >= REFRESH_MIN_INTERVAL_MS);
});
