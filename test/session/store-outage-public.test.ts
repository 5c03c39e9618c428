// Public routes serve during a session-store outage, whatever the session's state (issue 13, item
// 12): a signed-in user whose once-a-minute session rewrite or token refresh is due gets 200 on a
// public route while Redis is down — as an anonymous user does — and a clear 503 on a protected one.
// Before, only the lookup was guarded: the rewrite's or the refresh's store failure became a 503 on
// the public route too. Real redis-server (test/helpers/redis.ts), killed mid-session.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { loginViaHttp, CookieJar } from '../helpers/browserless-login.js';
import { until } from '../helpers/wait.js';

const ALICE = { user: 'alice', password: 'alice-password' };

async function get(url: string, jar?: CookieJar) {
  const r = await request(url, { headers: { accept: 'application/json', ...(jar ? { cookie: jar.header(url) } : {}) }, reset: true });
  await r.body.dump();
  return r.statusCode;
}


function redisStore(redis: TestRedis) {
  return (raw: Record<string, unknown>) => { Object.assign(raw.session as object, { store: 'redis', redis: { url: redis.url } }); };
}

async function redisDown(s: Stack, redis: TestRedis): Promise<void> {
  await redis.stop();
  await until('the proxy sees Redis down', 5000, async () => !s.server.runtime.redis!.healthy());
}

/** The jar's cookies for `url` as the proxy parses them (name → value). */
function cookiesOf(jar: CookieJar, url: string): Record<string, string> {
  return Object.fromEntries(jar.header(url).split('; ').map((c) => [c.slice(0, c.indexOf('=')), c.slice(c.indexOf('=') + 1)]));
}

function refreshCount(s: Stack) {
  return s.server.runtime.metrics.refresh.get().then((m) => m.values.reduce((n, v) => n + v.value, 0));
}

test('Redis down, session rewrite due: the signed-in user gets 200 on a public route (anonymous too), 503 on a protected one', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  // Only the proxy's clock moves: the (hour-long) tokens are nowhere near due, the last-seen
  // rewrite (once a minute) is. The session stays cached across the jump (a 2-minute cache window):
  // a cached session whose rewrite is due, as when a request comes a few seconds after one that
  // re-read a session last written a minute ago.
  let offset = 0;
  const s = await startStack(t, { edit: redisStore(redis), now: () => Date.now() + offset, sessionCacheWindowMs: 120_000 });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  assert.equal(await get(`${s.url}/x`, jar), 200);
  assert.equal(await get(`${s.url}/public/a.css`, jar), 200);

  await redisDown(s, redis);
  offset += 61_000;
  const cached = s.server.runtime.sessions.peek(cookiesOf(jar, s.url));
  assert.ok(cached && s.server.runtime.sessions.needsWrite(cached), 'the session is cached and its rewrite is due');
  assert.equal(await get(`${s.url}/public/b.css`, jar), 200, 'public route, signed in, rewrite due');
  assert.equal(await get(`${s.url}/public/c.css`), 200, 'public route, anonymous');
  assert.equal(await get(`${s.url}/x`, jar), 503, 'protected route: the store is needed');
  assert.equal(await get(`${s.url}/public/d.css`, jar), 200, 'public route again');
});

test('Redis down, token refresh due: the signed-in user gets 200 on a public route (anonymous too), 503 on a protected one', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  // 62 s tokens, due 12.4 s before they expire; the dev IdP and the proxy share this process's
  // Date.now(), moved by hand past that point (the tokens' exp and the proxy's clock agree).
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  t.after(() => { Date.now = realNow; });
  // The session stays cached across the jump (a 2-minute cache window), as in the test above.
  const s = await startStack(t, { edit: redisStore(redis), now: () => Date.now(), sessionCacheWindowMs: 120_000, idp: { ttl: { AccessToken: 62, IdToken: 62 } } });
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  assert.equal(await get(`${s.url}/x`, jar), 200);

  await redisDown(s, redis);
  offset += 51_000;
  const cached = s.server.runtime.sessions.peek(cookiesOf(jar, s.url));
  assert.ok(cached && s.server.runtime.refresher.isDue(cached) && !s.server.runtime.sessions.needsWrite(cached), 'the refresh is due (and only the refresh)');
  assert.equal(await get(`${s.url}/public/b.css`, jar), 200, 'public route, signed in, refresh due');
  assert.equal(await get(`${s.url}/public/c.css`), 200, 'public route, anonymous');
  assert.equal(await refreshCount(s), 0, 'no refresh happened (the lock needs Redis): the session is kept as it is');
  // The failed attempt holds this session's refresh back for the minimum interval: move past it.
  offset += 6_000;
  assert.equal(await get(`${s.url}/x`, jar), 503, 'protected route: the store is needed');
  assert.equal(await get(`${s.url}/public/d.css`, jar), 200, 'public route again');
});
