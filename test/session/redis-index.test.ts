// The Redis store's index by subject and by IdP session id: written on save, cleaned on remove,
// stale members tolerated, and removeBySub/removeBySid delete the sessions themselves.
import { test } from 'node:test';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { SessionCodec } from '../../src/session/codec.js';
import { RedisStore } from '../../src/session/redis-store.js';
import type { SessionRecord } from '../../src/session/record.js';
import { startRedis } from '../helpers/redis.js';
import { until } from '../helpers/wait.js';

const record = (sub: string, sid: string | undefined, createdAt: number): SessionRecord => ({
  v: 1, sid: `p-${createdAt}`, claims: { sub, ...(sid ? { sid } : {}) }, idToken: 'id.token.here', accessToken: 'secret-access-token', createdAt, seenAt: createdAt + 5,
});

async function setup(t: Parameters<typeof startRedis>[0]) {
  const redis = await startRedis(t);
  if (!redis) return undefined;
  const store = new RedisStore(new SessionCodec(['x'.repeat(40)]), 'portcullis', { url: redis.url, keyPrefix: 'pc:', ttlMs: 60_000 });
  t.after(() => store.close());
  const raw = new Redis(redis.url);
  t.after(() => raw.disconnect());
  await until('the store to connect', 2_500, () => store.healthy());
  return { store, raw };
}

/** Index key names carry the SHA-256 of the subject / IdP sid, never the name. */
const h = (v: string) => createHash('sha256').update(v).digest('hex');

test('redis index: sessions listed by sub (no tokens), cleaned on remove, expiring with the session', async (t) => {
  const s = await setup(t);
  if (!s) return;
  const { store, raw } = s;
  const a1 = await store.save(record('alice', 'idp-1', 1000), undefined);
  const a2 = await store.save(record('alice', 'idp-2', 2000), undefined);
  await store.save(record('bob', 'idp-3', 3000), undefined);
  const list = await store.listBySub('alice');
  assert.deepEqual(list.map((x) => [x.sub, x.idpSid, x.createdAt, x.seenAt]), [['alice', 'idp-1', 1000, 1005], ['alice', 'idp-2', 2000, 2005]]);
  assert.ok(list.every((x) => /^[0-9a-f]{64}$/.test(x.id)));
  assert.doesNotMatch(JSON.stringify(list), /secret-access-token|id\.token/);
  const ttl = await raw.pttl(`pc:idx:sub:${h('alice')}`);
  assert.ok(ttl > 50_000 && ttl <= 60_000, `the index expires with the session (${ttl})`);
  assert.ok(await raw.pttl(`pc:idx:sid:${h('idp-1')}`) > 50_000);

  await store.remove(a1);
  assert.deepEqual((await store.listBySub('alice')).map((x) => x.idpSid), ['idp-2']);
  assert.equal(await raw.hlen(`pc:idx:sub:${h('alice')}`), 1, 'cleaned on remove');
  assert.equal(await raw.exists(`pc:idx:sid:${h('idp-1')}`), 0);

  // A session gone behind the index's back (expired): a stale member, skipped and pruned.
  await raw.del(`pc:${(await store.listBySub('alice'))[0]!.id}`);
  assert.deepEqual(await store.listBySub('alice'), []);
  assert.equal(await raw.exists(`pc:idx:sub:${h('alice')}`), 0);
  assert.equal((await store.open(a2)), undefined);
});

test('redis index: removeBySub and removeBySid delete the sessions and their index entries', async (t) => {
  const s = await setup(t);
  if (!s) return;
  const { store, raw } = s;
  const a1 = await store.save(record('alice', 'idp-1', 1000), undefined);
  const a2 = await store.save(record('alice', undefined, 2000), undefined);
  const b1 = await store.save(record('bob', 'idp-b', 3000), undefined);
  const b2 = await store.save(record('bob', 'idp-b2', 4000), undefined);
  assert.equal(await store.removeBySub('alice'), 2);
  assert.equal(await store.open(a1), undefined);
  assert.equal(await store.open(a2), undefined);
  assert.equal(await raw.exists(`pc:idx:sub:${h('alice')}`, `pc:idx:sid:${h('idp-1')}`), 0);
  assert.equal(await store.removeBySub('alice'), 0, 'again: nothing left, no error');

  assert.equal(await store.removeSessions({ sid: 'idp-b', sub: 'bob' }), 1, 'a sid is as narrow as the revocation list makes it');
  assert.equal(await store.open(b1), undefined);
  assert.ok(await store.open(b2), "bob's other IdP session stays");
  assert.deepEqual((await store.listBySub('bob')).map((x) => x.idpSid), ['idp-b2']);
  assert.equal(await raw.exists(`pc:idx:sid:${h('idp-b')}`), 0);
  assert.equal(await store.removeBySid('nobody'), 0);
});

test('redis index: a provider\'s scope is in the key name, so no subject of the first provider shares another provider\'s entry', async (t) => {
  const s = await setup(t);
  if (!s) return;
  const { store, raw } = s;
  // Keycloak's federated subjects look like `f:<idp>:<user>`: a first-provider subject may hold the
  // text another provider's scoped name would be (`partners:alice`).
  const first = await store.save(record('partners:alice', 'x-sid', 1000), undefined);
  const other = await store.save({ ...record('alice', 'partners:x-sid', 2000), provider: 'partners' }, undefined);
  assert.deepEqual((await store.listBySub('alice', 'partners')).map((x) => x.createdAt), [2000]);
  assert.deepEqual((await store.listBySub('partners:alice')).map((x) => x.createdAt), [1000]);
  assert.equal(await raw.exists(`pc:idx:sub@partners:${h('alice')}`), 1);
  assert.equal(await raw.exists(`pc:idx:sub:${h('partners:alice')}`), 1);

  assert.equal(await store.removeBySub('alice', 'partners'), 1);
  assert.ok(await store.open(first), "the first provider's `partners:alice` stays signed in");
  assert.equal(await store.open(other), undefined);
  assert.equal(await store.removeBySid('x-sid', 'partners'), 0, "partners' sid `x-sid` is not the first provider's");
  assert.ok(await store.open(first));
  assert.equal(await store.removeBySid('x-sid'), 1);
  assert.equal(await store.open(first), undefined);
});
