// The cross-replica refresh lock (issue 13, item 6): `lock:refresh:<sid>` in Redis, taken with a
// random owner token and released by compare-and-delete. A replica whose lock expired while its
// refresh was still running (a slow IdP, a GC pause) must not release the lock another replica took
// since — with an unconditional DEL it would, and a third request would start a second refresh of
// the same refresh token. Against a real redis-server (test/helpers/redis.ts).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { SessionCodec } from '../../src/session/codec.js';
import { cookieSettings } from '../../src/session/cookies.js';
import { RedisStore } from '../../src/session/redis-store.js';
import { SessionManager, type SessionRecord } from '../../src/session/sessions.js';
import { Refresher, type RefreshedTokens } from '../../src/session/refresh.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const SECRET = 'refresh-lock-secret-0123456789abcdefghij';
const PREFIX = 'locktest:';
const cookies = cookieSettings('https://portcullis.example', 'portcullis', undefined);

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A RedisStore of its own (one per "replica"), connected, closed after the test. */
async function store(t: TestContext, redis: TestRedis): Promise<RedisStore> {
  const s = new RedisStore(new SessionCodec([SECRET]), cookies.session, { url: redis.url, keyPrefix: PREFIX, ttlMs: 3_600_000 });
  t.after(() => s.close());
  await until('redis ready', () => s.healthy());
  return s;
}

function rawClient(t: TestContext, redis: TestRedis): Redis {
  const raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  raw.on('error', () => {});
  t.after(() => raw.disconnect());
  return raw;
}

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

test('refresh lock primitives: after A\'s lock expired and B took it, A\'s release leaves B\'s lock in place', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const a = await store(t, redis);
  const b = await store(t, redis);
  const raw = rawClient(t, redis);
  const lock = 'lock:refresh:sid-1';
  assert.equal(await a.setIfAbsent(lock, 'owner-a', 150), true, 'A takes the lock');
  assert.equal(await b.setIfAbsent(lock, 'owner-b', 15_000), false, 'B cannot while A holds it');
  await until('A\'s lock expires', async () => (await raw.exists(PREFIX + lock)) === 0);
  assert.equal(await b.setIfAbsent(lock, 'owner-b', 15_000), true, 'B takes the expired lock');
  assert.equal(await a.delIfEquals(lock, 'owner-a'), false, 'A\'s late release deletes nothing');
  assert.equal(await raw.get(PREFIX + lock), 'owner-b', 'B still holds its lock');
  assert.equal(await b.delIfEquals(lock, 'owner-b'), true, 'B releases its own lock');
  assert.equal(await raw.exists(PREFIX + lock), 0);
});

test('two replicas\' Refreshers: A\'s refresh outlives its lock, B takes it; A finishing does not release B\'s lock; owners are random, not the pid', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const raw = rawClient(t, redis);
  const now = Date.now();
  const record: SessionRecord = {
    v: 1,
    sid: 'session-under-refresh',
    claims: { sub: 'alice' },
    idToken: 'id-token',
    refreshToken: 'refresh-token-1',
    // A 60 s token with 1 s left: due (the margin is 12 s).
    tokenIssuedAt: now - 59_000,
    tokenExpiresAt: now + 1_000,
    createdAt: now - 60_000,
    seenAt: now,
  };
  const timings = { idleTimeoutMs: 3_600_000, absoluteTimeoutMs: 86_400_000, cacheMaxEntries: 100 };
  const lockKey = `${PREFIX}lock:refresh:${record.sid}`;

  // Replica A signs the session in; replica B is given the same cookie.
  const storeA = await store(t, redis);
  const storeB = await store(t, redis);
  const sessionsA = new SessionManager(cookies, storeA, timings);
  const sessionsB = new SessionManager(cookies, storeB, timings);
  const setCookie = (await sessionsA.create(record, {}))[0]!;
  const jar = { [cookies.session]: setCookie.slice(setCookie.indexOf('=') + 1, setCookie.indexOf(';')) };

  const replica = (sessions: SessionManager, redisStore: RedisStore) => {
    const calls: Array<ReturnType<typeof deferred<RefreshedTokens>>> = [];
    const refresher = new Refresher({
      sessions,
      redis: redisStore,
      refreshGrant: () => { const d = deferred<RefreshedTokens>(); calls.push(d); return d.promise; },
      now: Date.now,
      count: () => {},
      log: { info() {}, warn() {} },
      onEnded: () => {},
    });
    return { sessions, refresher, calls };
  };
  const A = replica(sessionsA, storeA);
  const B = replica(sessionsB, storeB);
  const tokens = (n: number): RefreshedTokens => ({ claims: { sub: 'alice' }, idToken: 'id-token', idTokenReturned: false, refreshToken: `refresh-token-${n}`, tokenExpiresAt: Date.now() + 60_000 });

  const lookA = await A.sessions.lookup(jar);
  const lookB = await B.sessions.lookup(jar);
  assert.equal(lookA.kind, 'valid');
  assert.equal(lookB.kind, 'valid');
  if (lookA.kind !== 'valid' || lookB.kind !== 'valid') return;

  // A starts refreshing and holds the lock while the IdP is slow.
  const refreshA = A.refresher.ifDue(lookA.session, jar);
  assert.ok(refreshA, 'A finds the refresh due');
  await until('A calls the IdP', () => A.calls.length === 1);
  const ownerA = await raw.get(lockKey);
  assert.ok(ownerA, 'A holds the lock');
  assert.notEqual(ownerA, String(process.pid), 'the owner is not the process id (the same in every pod)');
  assert.ok(ownerA.length >= 16, 'a random owner token');

  // A's lock expires (its 15 s TTL, here cut short) while A is still waiting for the IdP…
  await raw.pexpire(lockKey, 1);
  await until('A\'s lock expired', async () => (await raw.exists(lockKey)) === 0);
  // …and B, finding the session due, takes the lock and refreshes.
  const refreshB = B.refresher.ifDue(lookB.session, jar);
  assert.ok(refreshB, 'B finds the refresh due');
  await until('B calls the IdP', () => B.calls.length === 1);
  const ownerB = await raw.get(lockKey);
  assert.ok(ownerB && ownerB !== ownerA, 'B holds the lock under its own owner token');

  // A's refresh completes: its release must not delete B's lock.
  A.calls[0]!.resolve(tokens(2));
  assert.equal((await refreshA).kind, 'refreshed');
  assert.equal(await raw.get(lockKey), ownerB, 'B\'s lock survives A\'s release');

  B.calls[0]!.resolve(tokens(3));
  assert.equal((await refreshB).kind, 'refreshed');
  assert.equal(await raw.exists(lockKey), 0, 'B released its own lock');
});
