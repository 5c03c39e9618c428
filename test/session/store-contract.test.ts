// One contract, two session stores (after oauth2-proxy's pkg/sessions/tests): whatever holds the
// session — the cookie itself or Redis behind a ticket — saving, opening, rewriting, rotation and
// bad input behave the same. Then what only the Redis store promises: Redis cannot read sessions,
// bodies expire, and an outage is a fast 503 that heals by itself.
import { test, describe, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { PortcullisError } from '../../src/errors.js';
import { SessionCodec } from '../../src/session/codec.js';
import { RedisStore, createRedisClient } from '../../src/session/redis-store.js';
import type { SessionRecord } from '../../src/session/sessions.js';
import { CookieStore, type SessionStore } from '../../src/session/store.js';
import { SessionManager } from '../../src/session/sessions.js';
import { RevocationList } from '../../src/session/revocation.js';
import { cookieSettings } from '../../src/session/cookies.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { until } from '../helpers/wait.js';

const COOKIE = '__Host-portcullis';
const PREFIX = 'test:';
const TTL_MS = 60_000;
const OLD = 'old-session-secret-0123456789abcdefghij';
const NEW = 'new-session-secret-0123456789abcdefghij';
const OTHER = 'someone-elses-secret-0123456789abcdefgh';

function makeRecord(over: Partial<SessionRecord> = {}): SessionRecord {
  const now = Date.now();
  return {
    v: 1,
    sid: 'sid-' + Math.random().toString(36).slice(2),
    claims: { sub: 'alice', email: 'alice@example.com', groups: ['admin', 'dev'], sid: 'idp-session-1' },
    idToken: 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWlkLXRva2Vu',
    accessToken: 'access-token-very-secret',
    refreshToken: 'refresh-token-very-secret',
    tokenExpiresAt: now + 3_600_000,
    createdAt: now,
    seenAt: now,
    ...over,
  };
}

function flipByte(sealed: string, at: number): string {
  const raw = Buffer.from(sealed.slice(3), 'base64url');
  const i = at < 0 ? raw.length + at : at;
  raw[i] = raw[i]! ^ 0x01;
  return `v1.${raw.toString('base64url')}`;
}

const isUnavailable = (err: unknown) => err instanceof PortcullisError && err.code === 'ERR_SESSION_STORE_UNAVAILABLE' && err.statusCode === 503;

interface StoreUnderTest {
  /** A store sealing with secrets[0] and opening with all; stores made in one test share one backend. */
  make(secrets: string[]): Promise<SessionStore>;
  /**
   * Whether remove() ends the session. True for Redis (the entry is deleted). False for the cookie
   * store: a stateless session has nothing to delete — remove() is a no-op, the value keeps opening,
   * and sign-out relies on expiring the cookie, back-channel logout on the revocation list.
   */
  removeEnds: boolean;
}

/** The contract every SessionStore keeps. `setup` resolves to undefined when the test was skipped. */
function storeContract(name: string, setup: (t: TestContext) => Promise<StoreUnderTest | undefined>): void {
  describe(`${name} store contract`, () => {
    test('save then open returns the same record', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const store = await s.make([NEW]);
      const record = makeRecord();
      const value = await store.save(record, undefined);
      assert.match(value, /^v1\.[A-Za-z0-9_-]+$/);
      assert.deepEqual(await store.open(value), { record, stale: false });
      assert.equal(store.healthy(), true);
    });

    test('each new session gets its own value; sessions are independent', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const store = await s.make([NEW]);
      const a = makeRecord({ claims: { sub: 'alice' } });
      const b = makeRecord({ claims: { sub: 'bob' } });
      const va = await store.save(a, undefined);
      const va2 = await store.save(a, undefined);
      const vb = await store.save(b, undefined);
      assert.notEqual(va, va2);
      await store.remove(va);
      assert.deepEqual((await store.open(vb))?.record, b);
      assert.deepEqual((await store.open(va2))?.record, a);
    });

    test('a value saved by a store with another secret does not open (undefined, no throw)', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const theirs = await s.make([OTHER]);
      const ours = await s.make([NEW]);
      const value = await theirs.save(makeRecord(), undefined);
      assert.equal(await ours.open(value), undefined);
    });

    test('tampered, truncated, foreign and garbage values are undefined, never a throw', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const store = await s.make([NEW]);
      const value = await store.save(makeRecord(), undefined);
      const codec = new SessionCodec([NEW]);
      const bad: Array<[string, string]> = [
        ['flipped kid', flipByte(value, 0)],
        ['flipped iv', flipByte(value, 4)],
        ['flipped ciphertext', flipByte(value, 20)],
        ['flipped tag', flipByte(value, -1)],
        ['truncated by 1', value.slice(0, -1)],
        ['truncated to half', value.slice(0, value.length >> 1)],
        ['appended bytes', `${value}AAAAAAAA`],
        ['empty', ''],
        ['garbage', 'hello world'],
        ['prefix only', 'v1.'],
        ['zeros', `v1.${Buffer.alloc(64).toString('base64url')}`],
        ['huge', `v1.${'A'.repeat(100_000)}`],
        ['sealed for another cookie (a login transaction)', codec.seal('__Host-portcullis_txn_abc', makeRecord())],
        ['sealed for this cookie but not a session', codec.seal(COOKIE, { hello: 'world' })],
        ['a ticket for a session that never existed', codec.seal(COOKIE, { id: 'A'.repeat(43), key: 'B'.repeat(43) })],
      ];
      for (const [what, v] of bad) assert.equal(await store.open(v), undefined, what);
      for (const [what, v] of bad) await assert.doesNotReject(store.remove(v), what);
      assert.ok(await store.open(value), 'the genuine value still opens');
    });

    test(s_removeTitle(), async (t) => {
      const s = await setup(t);
      if (!s) return;
      const store = await s.make([NEW]);
      const record = makeRecord();
      const value = await store.save(record, undefined);
      await store.remove(value);
      if (s.removeEnds) assert.equal(await store.open(value), undefined);
      else assert.deepEqual((await store.open(value))?.record, record, 'stateless: remove() is a no-op');
      await assert.doesNotReject(store.remove(value), 'removing twice is fine');
    });

    test('key rotation: [new, old] opens old values as stale and re-seals them with new; [new] alone does not open them', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const before = await s.make([OLD]);
      const rotated = await s.make([NEW, OLD]);
      const after = await s.make([NEW]);
      const record = makeRecord();
      const oldValue = await before.save(record, undefined);

      assert.deepEqual(await rotated.open(oldValue), { record, stale: true });
      assert.equal(await after.open(oldValue), undefined);

      const updated = { ...record, seenAt: record.seenAt + 1000 };
      const resealed = await rotated.save(updated, oldValue);
      assert.notEqual(resealed, oldValue);
      assert.deepEqual(await rotated.open(resealed), { record: updated, stale: false });
      assert.deepEqual(await after.open(resealed), { record: updated, stale: false });
    });

    test('rewrite in place with `previous` keeps working', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const store = await s.make([NEW]);
      const record = makeRecord();
      let value = await store.save(record, undefined);
      for (let i = 1; i <= 5; i++) {
        const next = { ...record, seenAt: record.seenAt + i * 1000, claims: { ...record.claims, n: i } };
        value = await store.save(next, value);
        assert.deepEqual(await store.open(value), { record: next, stale: false });
      }
    });

    test('a copy of the cookie taken before sign-out is refused afterwards (session manager + revocation list, wired as the runtime does)', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const store = await s.make([NEW]);
      const revocations = new RevocationList(TTL_MS);
      const settings = cookieSettings('https://portcullis.example', 'portcullis', undefined);
      assert.equal(settings.session, COOKIE);
      const sessions = new SessionManager(settings, store, { idleTimeoutMs: TTL_MS, absoluteTimeoutMs: TTL_MS, cacheMaxEntries: 100 }, Date.now, (x) => revocations.isRevoked(x));
      const browser = { [COOKIE]: await store.save(makeRecord(), undefined) };
      const copy = { ...browser };
      const other = { [COOKIE]: await store.save(makeRecord(), undefined) }; // the same user's other session
      const found = await sessions.lookup(copy);
      assert.equal(found.kind, 'valid');
      assert.equal((await sessions.lookup(other)).kind, 'valid');
      // Sign-out (src/signin/endpoints.ts): the session's own id on the revocation list, then the store entry and the cookie.
      await revocations.revoke({ psid: (found as { session: { sid: string } }).session.sid });
      await sessions.destroy(browser);
      assert.notEqual((await sessions.lookup(copy)).kind, 'valid', 'the copy is refused');
      assert.equal(sessions.peek(copy), undefined);
      assert.equal((await sessions.lookup(other)).kind, 'valid', 'other sessions of the user live on');
    });

    test('large records (20 KB of claims) round-trip', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const store = await s.make([NEW]);
      const groups = Array.from({ length: 700 }, (_, i) => `group-${String(i).padStart(4, '0')}-${'x'.repeat(16)}`);
      const record = makeRecord({ claims: { sub: 'alice', groups } });
      assert.ok(JSON.stringify(record.claims).length >= 20_000);
      const value = await store.save(record, undefined);
      assert.deepEqual(await store.open(value), { record, stale: false });
      const rewritten = await store.save({ ...record, seenAt: record.seenAt + 1 }, value);
      assert.equal((await store.open(rewritten))?.record.seenAt, record.seenAt + 1);
    });

    test('values contain no plaintext', async (t) => {
      const s = await setup(t);
      if (!s) return;
      const store = await s.make([NEW]);
      const value = await store.save(makeRecord(), undefined);
      const decoded = Buffer.from(value.slice(3), 'base64url').toString('latin1');
      for (const secret of ['alice', 'refresh-token-very-secret', 'access-token-very-secret']) {
        assert.ok(!value.includes(secret) && !decoded.includes(secret), secret);
      }
    });
  });
}

function s_removeTitle(): string {
  return 'remove then open: no session for server-side stores; a documented no-op for the cookie store';
}

// ---- The two stores ----

storeContract('cookie', async () => ({
  removeEnds: false,
  make: async (secrets) => new CookieStore(new SessionCodec(secrets), COOKIE),
}));

storeContract('redis', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return undefined;
  return { removeEnds: true, make: (secrets) => makeRedisStore(t, redis, secrets) };
});

async function makeRedisStore(t: TestContext, redis: TestRedis, secrets: string[], ttlMs = TTL_MS): Promise<RedisStore> {
  const store = new RedisStore(new SessionCodec(secrets), COOKIE, { url: redis.url, keyPrefix: PREFIX, ttlMs });
  t.after(() => store.close());
  await until('the store to connect', 10_000, () => store.healthy(), 25);
  return store;
}

/** A plain second client, as an operator with redis-cli (or an attacker with a dump) would see Redis. */
async function inspector(t: TestContext, redis: TestRedis): Promise<Redis> {
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  await client.connect();
  t.after(() => client.disconnect());
  return client;
}

function ticketOf(value: string, secrets = [NEW]): { id: string; key: string } {
  return new SessionCodec(secrets).open<{ id: string; key: string }>(COOKIE, value)!.value;
}

function redisKeyOf(value: string, secrets = [NEW]): string {
  return PREFIX + createHash('sha256').update(ticketOf(value, secrets).id).digest('hex');
}

// ---- What only the Redis store promises ----

describe('redis store', () => {
  test('the cookie holds only a small ticket; Redis holds an encrypted body under a hashed key', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW]);
    const record = makeRecord({ claims: { sub: 'alice', groups: Array.from({ length: 500 }, (_, i) => `g${i}`) } });
    const value = await store.save(record, undefined);
    assert.ok(value.length < 300, `ticket cookie is ${value.length} chars`);

    const ticket = ticketOf(value);
    assert.match(ticket.id, /^[A-Za-z0-9_-]{43}$/);
    assert.match(ticket.key, /^[A-Za-z0-9_-]{43}$/);

    const raw = await inspector(t, redis);
    const all = await raw.keys('*');
    // Besides the session, the index by subject (src/session/redis-store.ts): its name hashes the subject.
    const keys = all.filter((k) => !k.startsWith(`${PREFIX}idx:`));
    assert.deepEqual(keys, [redisKeyOf(value)]);
    for (const k of all) assert.ok(!k.includes('alice'), `no key names the user: ${k}`);
    for (const k of keys) {
      assert.ok(k.startsWith(PREFIX));
      assert.ok(!k.includes(ticket.id), 'the Redis key is not the cookie id');
      assert.ok(!k.includes(Buffer.from(ticket.id, 'base64url').toString('hex')), 'nor its hex form');
    }
    const body = await raw.getBuffer(keys[0]!);
    assert.ok(body && body.length > 1000);
    const text = body.toString('latin1');
    for (const plain of ['alice', 'g499', 'refresh-token-very-secret', 'access-token-very-secret', record.idToken, record.sid, '"claims"']) {
      assert.ok(!text.includes(plain), `Redis value contains ${plain}`);
    }
  });

  test('a body moved to another session\'s key does not open, even with the right key (the Redis key is bound as associated data)', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW]);
    const raw = await inspector(t, redis);
    const alice = await store.save(makeRecord({ claims: { sub: 'alice' } }), undefined);
    const mallory = await store.save(makeRecord({ claims: { sub: 'mallory' } }), undefined);
    // Mallory can read her own ticket only if she holds the secret; grant her that and more: she
    // writes Alice's body under her own session's key, and her ticket carries Alice's body key.
    const forged = new SessionCodec([NEW]).seal(COOKIE, { id: ticketOf(mallory).id, key: ticketOf(alice).key });
    await raw.set(redisKeyOf(mallory), (await raw.getBuffer(redisKeyOf(alice)))!);
    assert.equal(await store.open(forged), undefined);
    assert.equal(await store.open(mallory), undefined);
    assert.equal((await store.open(alice))?.record.claims.sub, 'alice');
  });

  test('a body altered in Redis is no session', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW]);
    const raw = await inspector(t, redis);
    const value = await store.save(makeRecord(), undefined);
    const key = redisKeyOf(value);
    const body = (await raw.getBuffer(key))!;
    for (const at of [0, 1, 20, body.length - 1]) {
      const altered = Buffer.from(body);
      altered[at] = altered[at]! ^ 0x01;
      await raw.set(key, altered);
      assert.equal(await store.open(value), undefined, `byte ${at}`);
    }
    for (const junk of [Buffer.alloc(0), Buffer.from('{"v":1}'), body.subarray(0, 20)]) {
      await raw.set(key, junk);
      assert.equal(await store.open(value), undefined);
    }
  });

  test('a cookie-store value (after switching stores) is no session', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW]);
    const cookieValue = await new CookieStore(new SessionCodec([NEW]), COOKIE).save(makeRecord());
    assert.equal(await store.open(cookieValue), undefined);
  });

  test('bodies carry a TTL of at most the absolute timeout, renewed on rewrite', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW], 30_000);
    const raw = await inspector(t, redis);
    const value = await store.save(makeRecord(), undefined);
    const pttl = await raw.pttl(redisKeyOf(value));
    assert.ok(pttl > 0 && pttl <= 30_000, `PTTL ${pttl}`);
    await raw.pexpire(redisKeyOf(value), 5000);
    await store.save(makeRecord(), value);
    assert.ok((await raw.pttl(redisKeyOf(value))) > 25_000);
  });

  test('an expired body is no session', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW], 1000);
    const value = await store.save(makeRecord(), undefined);
    assert.ok(await store.open(value));
    await until('the body to expire', 5000, async () => (await store.open(value)) === undefined, 25);
  });

  test('a rewrite keeps the ticket: same Redis key, same cookie value (until the secret rotates)', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const raw = await inspector(t, redis);
    const before = await makeRedisStore(t, redis, [OLD]);
    const rotated = await makeRedisStore(t, redis, [NEW, OLD]);
    const v1 = await before.save(makeRecord(), undefined);
    assert.equal(await before.save(makeRecord(), v1), v1);
    const v2 = await rotated.save(makeRecord(), v1);
    assert.notEqual(v2, v1);
    assert.equal(ticketOf(v2).id, ticketOf(v1, [OLD]).id);
    assert.deepEqual((await raw.keys('*')).filter((k) => !k.startsWith(`${PREFIX}idx:`)), [redisKeyOf(v2)]);
  });

  test('a rewrite racing a sign-out does not bring the session back', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW]);
    const raw = await inspector(t, redis);
    const value = await store.save(makeRecord(), undefined);
    await store.remove(value);
    const after = await store.save(makeRecord({ seenAt: Date.now() + 1000 }), value);
    assert.equal(await store.open(after), undefined);
    assert.deepEqual(await raw.keys('*'), []);
  });

  test('Redis killed mid-session: a fast 503, unhealthy; back by itself after restart, old sessions gone', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW]);
    const value = await store.save(makeRecord(), undefined);
    assert.ok(await store.open(value));

    await redis.stop();
    for (const op of [() => store.open(value), () => store.save(makeRecord(), undefined), () => store.remove(value)]) {
      const started = Date.now();
      await assert.rejects(op(), isUnavailable);
      assert.ok(Date.now() - started < 2000, `failed after ${Date.now() - started} ms`);
    }
    await until('healthy() to turn false', 2000, () => !store.healthy(), 25);

    await redis.start(); // --save '': comes back empty
    await until('the store to reconnect by itself', 10_000, () => store.healthy(), 25);
    assert.equal(await store.open(value), undefined, 'the non-persisted session is gone');
    const fresh = await store.save(makeRecord({ claims: { sub: 'bob' } }), undefined);
    assert.equal((await store.open(fresh))?.record.claims.sub, 'bob');
  });

  test('Redis down at start: unhealthy and failing fast, then connects by itself', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    await redis.stop();
    const store = new RedisStore(new SessionCodec([NEW]), COOKIE, { url: redis.url, keyPrefix: PREFIX, ttlMs: TTL_MS });
    t.after(() => store.close());
    assert.equal(store.healthy(), false);
    const started = Date.now();
    await assert.rejects(store.save(makeRecord(), undefined), isUnavailable);
    assert.ok(Date.now() - started < 500);
    let reconnects = 0;
    store.client.on('reconnecting', () => { reconnects += 1; });
    await until('failed reconnect attempts', 10_000, () => reconnects >= 2, 25);
    await redis.start();
    await until('the store to connect', 10_000, () => store.healthy(), 25);
    const value = await store.save(makeRecord(), undefined);
    assert.ok(await store.open(value));
  });

  test('a hung Redis (SIGSTOP) times out instead of hanging the request', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW]);
    const value = await store.save(makeRecord(), undefined);
    const pid = redis.pid;
    process.kill(pid, 'SIGSTOP');
    t.after(() => { try { process.kill(pid, 'SIGCONT'); } catch { /* already gone */ } });
    const started = Date.now();
    await assert.rejects(store.open(value), isUnavailable);
    const took = Date.now() - started;
    assert.ok(took >= 1000 && took < 3000, `failed after ${took} ms`);
    process.kill(pid, 'SIGCONT');
    await until('the store to answer again', 10_000, async () => store.healthy() && (await store.open(value).then(Boolean, () => false)), 25);
  });

  test('setIfAbsent (SET NX PX), exists and del, under the key prefix', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const store = await makeRedisStore(t, redis, [NEW]);
    const raw = await inspector(t, redis);

    assert.equal(await store.setIfAbsent('lock:refresh:s1', 'replica-a', 1000), true);
    assert.equal(await store.setIfAbsent('lock:refresh:s1', 'replica-b', 1000), false, 'held: a second caller loses');
    assert.equal(await raw.get(`${PREFIX}lock:refresh:s1`), 'replica-a', 'the first value stays');
    const pttl = await raw.pttl(`${PREFIX}lock:refresh:s1`);
    assert.ok(pttl > 0 && pttl <= 1000, `PTTL ${pttl}`);
    assert.equal(await store.exists('lock:refresh:s1'), true);
    await until('the lock to expire', 5000, async () => !(await store.exists('lock:refresh:s1')), 25);
    assert.equal(await store.setIfAbsent('lock:refresh:s1', 'replica-b', 1000), true, 'free again after the TTL');

    assert.equal(await store.del('lock:refresh:s1'), true);
    assert.equal(await store.del('lock:refresh:s1'), false);
    assert.equal(await store.exists('lock:refresh:s1'), false);

    // Concurrency: of many simultaneous callers exactly one wins.
    const wins = await Promise.all(Array.from({ length: 50 }, (_, i) => store.setIfAbsent('jti:abc', String(i), 60_000)));
    assert.equal(wins.filter(Boolean).length, 1);

    await redis.stop();
    await assert.rejects(store.setIfAbsent('jti:def', '1', 1000), isUnavailable);
    await assert.rejects(store.exists('jti:abc'), isUnavailable);
    await assert.rejects(store.del('jti:abc'), isUnavailable);
  });

  test('close() ends a client the store created, not one it was given', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const own = await makeRedisStore(t, redis, [NEW]);
    await own.close();
    assert.equal(own.client.status, 'end');
    assert.equal(own.healthy(), false);

    const given = createRedisClient(redis.url);
    t.after(() => given.disconnect());
    const store = new RedisStore(new SessionCodec([NEW]), COOKIE, { url: 'redis://ignored.invalid', keyPrefix: PREFIX, ttlMs: TTL_MS, client: given });
    await until('the given client to connect', 10_000, () => store.healthy(), 25);
    const value = await store.save(makeRecord(), undefined);
    assert.ok(await store.open(value));
    await store.close();
    assert.equal(given.status, 'ready');
  });

  test('a given lazyConnect client is connected rather than left waiting', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const given = new Redis(redis.url, { lazyConnect: true });
    t.after(() => given.disconnect());
    const store = new RedisStore(new SessionCodec([NEW]), COOKIE, { url: redis.url, keyPrefix: PREFIX, ttlMs: TTL_MS, client: given });
    await until('the given client to connect', 10_000, () => store.healthy(), 25);
  });

  test('the TTL must be a positive integer', () => {
    for (const ttlMs of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => new RedisStore(new SessionCodec([NEW]), COOKIE, { url: 'redis://127.0.0.1:1', keyPrefix: PREFIX, ttlMs }), /ttlMs/);
    }
  });
});
