// A replica is ready only once it knows the shared revocations (issue 13, item 11): with Redis
// configured, /readyz stays 503 until the first pull of the revocation list has succeeded, and a
// pull while Redis is not connected is a failure, not "nothing is revoked". Before, a replica that
// started pulled before Redis was connected (an empty list, taken as success), said 200 as soon as
// Redis connected, and served sessions other replicas had ended until the next pull ~2 s later.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { RevocationList, redisRevocations, type RevocationBackend } from '../../src/session/revocation.js';
import { RedisStore } from '../../src/session/redis-store.js';
import { SessionCodec } from '../../src/session/codec.js';
import { startStack } from '../helpers/stack.js';
import { startRedis } from '../helpers/redis.js';
import { loginViaHttp, CookieJar } from '../helpers/browserless-login.js';

const ALICE = { user: 'alice', password: 'alice-password' };

async function until(what: string, ms: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function readyz(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await request(`${url}/readyz`);
  return { status: r.statusCode, body: await r.body.json() as Record<string, unknown> };
}

test('revocation list: synced only after the first successful pull; failed pulls are counted and reported; no backend: synced at once', async () => {
  assert.equal(new RevocationList(60_000).synced, true, 'without a shared backend there is nothing to wait for');
  let failing = 2;
  const backend: RevocationBackend = {
    async add() {},
    async all() {
      if (failing > 0) { failing -= 1; throw new Error('redis connection is connecting'); }
      return { 'sub:alice': Date.now() };
    },
  };
  const errors: number[] = [];
  const synced: Array<{ first: boolean; afterFailures: number; entries: number }> = [];
  const list = new RevocationList(60_000, Date.now, backend, (_err, inRow) => errors.push(inRow), (info) => synced.push(info));
  assert.equal(list.synced, false);
  assert.equal(await list.syncNow(), false);
  assert.equal(await list.syncNow(), false);
  assert.equal(list.synced, false, 'still not synced after failed pulls');
  assert.equal(list.syncFailures, 2);
  assert.match(list.lastSyncError ?? '', /connecting/);
  assert.deepEqual(errors, [1, 2], 'each failure reported with the streak length');
  assert.equal(await list.syncNow(), true);
  assert.equal(list.synced, true);
  assert.equal(list.lastSyncError, undefined);
  assert.deepEqual(synced, [{ first: true, afterFailures: 2, entries: 1 }]);
  assert.equal(list.isRevoked({ sid: 'p', sub: 'alice', idpSid: undefined, createdAt: Date.now() - 1000 }), true, 'the pulled entry applies');
  // Concurrent calls share one pull.
  let calls = 0;
  const slow = new RevocationList(60_000, Date.now, { async add() {}, async all() { calls += 1; await new Promise((r) => setTimeout(r, 20)); return {}; } });
  await Promise.all([slow.syncNow(), slow.syncNow(), slow.syncNow()]);
  assert.equal(calls, 1);
});

test('redis revocations: a pull while Redis is not connected fails (it is not an empty list)', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const store = new RedisStore(new SessionCodec(['revocation-readiness-secret-0123456789abcd']), 'portcullis', { url: redis.url, keyPrefix: 'rr:', ttlMs: 60_000 });
  t.after(() => store.close());
  const backend = redisRevocations(store, 60_000, Date.now);
  await until('connected', 5000, () => store.healthy());
  await backend.add({ 'sub:alice': Date.now() });
  assert.deepEqual(Object.keys(await backend.all()), ['sub:alice']);
  await redis.stop();
  await until('disconnected', 5000, () => !store.healthy());
  await assert.rejects(backend.all(), /redis connection is/);
});

test('a replica that starts is not ready before it has pulled the shared revocations, and from its first 200 on refuses a session another replica ended', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  // Cookie sessions with a Redis URL: a copy of the cookie opens on any replica; only the shared
  // revocation list says it was ended.
  const edit = (raw: Record<string, unknown>) => { Object.assign(raw.session as object, { redis: { url: redis.url } }); };
  const a = await startStack(t, { edit });
  await until('replica A ready', 5000, async () => (await readyz(a.url)).status === 200);
  const { jar } = await loginViaHttp(`${a.url}/`, ALICE);
  const cookie = jar.get('portcullis', a.url)!;
  await a.server.runtime.revokeSessions({ sub: 'alice' }, 'admin');

  const b = await startStack(t, { edit, existingIdp: a.idp });
  const jarB = new CookieJar();
  jarB.set('portcullis', cookie, b.url);
  // From the first moment B says ready, the ended session is refused there.
  let r = await readyz(b.url);
  while (r.status !== 200) {
    assert.equal(r.status, 503);
    await new Promise((res) => setTimeout(res, 5));
    r = await readyz(b.url);
  }
  const x = await request(`${b.url}/x`, { headers: { accept: 'application/json', cookie: jarB.header(b.url) } });
  await x.body.dump();
  assert.equal(x.statusCode, 401, 'the session ended on A is refused on B as soon as B is ready');
  assert.equal(r.body.revocations, 'ok');
  assert.equal(b.server.runtime.revocations.synced, true);
  assert.ok(b.logs.some((l) => l.includes('revocation list pulled from redis')), 'the first pull is logged');
});

test('Redis unreachable when a replica starts: /readyz 503 naming the revocation list until Redis is there and the list is pulled', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  await redis.stop();
  const edit = (raw: Record<string, unknown>) => { Object.assign(raw.session as object, { redis: { url: redis.url } }); };
  const s = await startStack(t, { edit });
  const down = await readyz(s.url);
  assert.equal(down.status, 503);
  assert.equal(down.body.redis, 'redis unavailable');
  assert.match(String(down.body.revocations), /^not pulled from redis yet \(\d+ failed pulls\)$/);
  assert.ok(s.server.runtime.revocations.syncFailures >= 1, 'failed pulls are counted');
  await redis.start();
  await until('ready once Redis is back', 10_000, async () => (await readyz(s.url)).status === 200);
  assert.equal((await readyz(s.url)).body.revocations, 'ok');
});
