// session.redis.url: one server, Sentinel and Cluster are all reachable from the one URL the config
// has — parsed into ioredis options, and proven against a real Sentinel and a real (one-node) Cluster.
import { test, describe, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { SessionCodec } from '../../src/session/codec.js';
import { RedisStore, createRedisClient, parseRedisUrl } from '../../src/session/redis-store.js';
import type { SessionRecord } from '../../src/session/sessions.js';
import { findTool, missingToolReason } from '../helpers/chromium.js';
import { startRedis } from '../helpers/redis.js';
import { until } from '../helpers/wait.js';
import { freePort } from '../../dev/devidp/net.js';

describe('parseRedisUrl', () => {
  test('one server', () => {
    assert.deepEqual(parseRedisUrl('redis://127.0.0.1:6380'), { mode: 'standalone', options: { host: '127.0.0.1', port: 6380 } });
    assert.deepEqual(parseRedisUrl('redis://redis.svc'), { mode: 'standalone', options: { host: 'redis.svc', port: 6379 } });
    assert.deepEqual(parseRedisUrl('redis://:s3cr%40t@redis.svc:6379/2'), {
      mode: 'standalone', options: { password: 's3cr@t', db: 2, host: 'redis.svc', port: 6379 },
    });
    assert.deepEqual(parseRedisUrl('rediss://portcullis:pw@redis.example.com'), {
      mode: 'standalone', options: { username: 'portcullis', password: 'pw', tls: { servername: 'redis.example.com' }, host: 'redis.example.com', port: 6379 },
    });
    assert.deepEqual(parseRedisUrl('rediss://10.1.2.3:6380').options.tls, {}, 'no SNI for an IP address');
    assert.deepEqual(parseRedisUrl('redis://[::1]:7000/0'), { mode: 'standalone', options: { db: 0, host: '::1', port: 7000 } });
  });

  test('Sentinel: the hosts are sentinels, ?sentinel= names the master', () => {
    assert.deepEqual(parseRedisUrl('redis://:pw@s1,s2:26380,10.0.0.3:26381/1?sentinel=mymaster&sentinelPassword=spw'), {
      mode: 'sentinel',
      options: {
        password: 'pw', db: 1, name: 'mymaster', sentinelPassword: 'spw',
        sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26380 }, { host: '10.0.0.3', port: 26381 }],
      },
    });
    const tls = parseRedisUrl('rediss://s1?sentinel=m');
    assert.equal(tls.mode, 'sentinel');
    assert.deepEqual([tls.options.tls, tls.options.enableTLSForSentinelMode, tls.options.sentinelTLS], [{}, true, {}]);
  });

  test('Cluster: the hosts are seed nodes', () => {
    assert.deepEqual(parseRedisUrl('redis://:pw@n1:7000,n2:7001?cluster=true'), {
      mode: 'cluster', nodes: [{ host: 'n1', port: 7000 }, { host: 'n2', port: 7001 }], options: { password: 'pw' },
    });
  });

  const invalid: Array<[string, RegExp]> = [
    ['http://redis.svc', /must look like/],
    ['redis.svc:6379', /must look like/],
    ['redis://r?timeout=5', /unknown parameter "timeout"/],
    ['redis://a,b', /several hosts need/],
    ['redis://r/abc', /database number/],
    ['redis://n1/1?cluster=true', /only database 0/],
    ['redis://n1?cluster=yes', /cluster must be true or false/],
    ['redis://s1?sentinel=', /master name/],
    ['redis://s1?sentinel=m&cluster=true', /cannot be combined/],
    ['redis://r?sentinelPassword=x', /needs sentinel=/],
    ['redis://r:99999', /out of range/],
    ['redis://r:x', /not host\[:port\]/],
    ['redis://:%E0%A4%A@r', /percent-encoding/],
  ];
  for (const [url, message] of invalid) {
    test(`rejects ${url}`, () => {
      assert.throws(() => parseRedisUrl(url), message);
    });
  }

  test('errors never echo the password', () => {
    for (const url of ['redis://:hunter2secret@a,b', 'redis://:hunter2secret@r?x=1', 'redis://:hunter2secret@r/abc']) {
      assert.throws(() => parseRedisUrl(url), (err: Error) => !err.message.includes('hunter2secret'));
    }
  });

  test('createRedisClient refuses a bad URL at once (boot time), without connecting', () => {
    assert.throws(() => createRedisClient('redis://a,b'), /several hosts/);
  });
});

// ---- Real topologies ----

const NEW = 'new-session-secret-0123456789abcdefghij';
const skipNoRedis = { skip: missingToolReason('redis-server') };

function record(): SessionRecord {
  const now = Date.now();
  return { v: 1, sid: 's1', claims: { sub: 'alice' }, idToken: 'x.y.z', createdAt: now, seenAt: now };
}

/** Runs redis-server with extra arguments in a scratch directory; killed and cleaned up after the test. */
async function spawnRedis(t: TestContext, args: string[], conf?: string): Promise<number> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-redis-'));
  const argv = [...(conf === undefined ? [] : [join(dir, 'redis.conf')]), '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', ...args];
  if (conf !== undefined) writeFileSync(join(dir, 'redis.conf'), conf);
  const child = spawn(findTool('redis-server')!, argv, { stdio: 'ignore' });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  await until(`redis-server on port ${port} to answer`, 10_000, () => answers(port));
  return port;
}

/** Any RESP reply to PING (+PONG, or -NOAUTH when a password is set) means the server is up. */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (c: Buffer) => done(c[0] === 0x2b || c[0] === 0x2d));
  });
}

async function roundTrip(t: TestContext, url: string): Promise<RedisStore> {
  const store = new RedisStore(new SessionCodec([NEW]), '__Host-portcullis', { url, keyPrefix: 'topology:', ttlMs: 60_000 });
  t.after(() => store.close());
  await until('the store to connect', 10_000, () => store.healthy());
  const value = await store.save(record(), undefined);
  assert.equal((await store.open(value))?.record.claims.sub, 'alice');
  assert.equal(await store.setIfAbsent('lock:x', '1', 10_000), true);
  assert.equal(await store.setIfAbsent('lock:x', '1', 10_000), false);
  await store.remove(value);
  assert.equal(await store.open(value), undefined);
  return store;
}

describe('real topologies', skipNoRedis, () => {
  test('one server with a password and a database number', async (t) => {
    const port = await spawnRedis(t, ['--requirepass', 'p@ss word']);
    const store = await roundTrip(t, `redis://:${encodeURIComponent('p@ss word')}@127.0.0.1:${port}/3`);
    assert.ok(store.client instanceof Redis);
    assert.equal(store.client.options.db, 3);
  });

  test('a wrong password is unhealthy, not a crash', async (t) => {
    const port = await spawnRedis(t, ['--requirepass', 'right']);
    const store = new RedisStore(new SessionCodec([NEW]), '__Host-portcullis', { url: `redis://:wrong@127.0.0.1:${port}`, keyPrefix: 'x:', ttlMs: 1000 });
    t.after(() => store.close());
    // The server's refusal of the password, as the client reports it (ioredis: WRONGPASS), not a guess at how long it takes.
    const [refused] = await once(store.client, 'error', { signal: AbortSignal.timeout(10_000) }) as [Error];
    assert.match(refused.message, /WRONGPASS|invalid password/i);
    assert.equal(store.healthy(), false);
  });

  test('Sentinel: the master is found through the sentinel', async (t) => {
    const redis = await startRedis(t);
    if (!redis) return;
    const sentinelPort = await spawnRedis(t, ['--sentinel'], [
      `sentinel monitor mymaster 127.0.0.1 ${redis.port} 1`,
      'sentinel down-after-milliseconds mymaster 60000',
      '',
    ].join('\n'));
    const store = await roundTrip(t, `redis://127.0.0.1:${sentinelPort}?sentinel=mymaster`);
    // The session landed on the master the sentinel named.
    const direct = new Redis(redis.url).on('error', () => {});
    t.after(() => direct.disconnect());
    assert.equal(await direct.exists('topology:lock:x'), 1);
    assert.ok(store.client instanceof Redis);
  });

  test('Cluster: keys are routed through the cluster client', async (t) => {
    const port = await spawnRedis(t, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1']);
    const admin = new Redis({ port, host: '127.0.0.1' }).on('error', () => {});
    t.after(() => admin.disconnect());
    await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    await until('cluster_state:ok', 10_000, async () => String(await admin.call('CLUSTER', 'INFO')).includes('cluster_state:ok'));
    const store = await roundTrip(t, `redis://127.0.0.1:${port}?cluster=true`);
    assert.ok(store.client instanceof Cluster);
  });
});
