// Redis Cluster (issue 13, item 11): a shard that goes down is logged and reflected in readiness.
// The ioredis cluster client stays "ready" while one master is dead — and with the default
// cluster-require-full-coverage, every command then fails (CLUSTERDOWN) — so RedisStore asks the
// cluster itself (CLUSTER INFO, every CLUSTER_PROBE_MS) and healthy() (→ /readyz) is false while
// it says `fail`. A real three-master cluster (no replicas) of redis-server processes on free
// loopback ports, built with redis-cli --cluster create; one master killed and started again.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { SessionCodec } from '../../src/session/codec.js';
import { RedisStore } from '../../src/session/redis-store.js';
import { findTool, requireTool } from '../helpers/chromium.js';
import { until } from '../helpers/wait.js';
import { canListen, freePort } from '../../dev/devidp/net.js';

const run = promisify(execFile);

/** A free port whose cluster bus port (+10000) is free too. */
async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (await canListen(port + 10000)) return port;
  }
}

async function startCluster(t: TestContext) {
  if (!requireTool(t, 'redis-server') || !requireTool(t, 'redis-cli')) return undefined;
  const server = findTool('redis-server')!;
  const cli = findTool('redis-cli')!;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-cluster-'));
  const ports = [await freeClusterPort(), await freeClusterPort(), await freeClusterPort()];
  const procs = new Map<number, ChildProcess>();
  const start = async (port: number) => {
    const p = spawn(server, ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', '1000', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    procs.set(port, p);
    await until(`node ${port} answers`, 10_000, async () => (await run(cli, ['-p', String(port), 'ping']).catch(() => ({ stdout: '' }))).stdout.trim() === 'PONG');
  };
  const stop = async (port: number) => {
    const p = procs.get(port);
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = once(p, 'exit');
    process.kill(p.pid!, 'SIGKILL');
    await exited;
  };
  t.after(async () => { for (const port of ports) await stop(port); rmSync(dir, { recursive: true, force: true }); });
  for (const port of ports) await start(port);
  await run(cli, ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
  const state = async () => (await run(cli, ['-p', String(ports[0]), 'cluster', 'info']).catch(() => ({ stdout: '' }))).stdout;
  await until('cluster_state:ok', 15_000, async () => /cluster_state:ok/.test(await state()));
  return { ports, start, stop, url: `redis://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}?cluster=true` };
}

test('redis cluster: a master that dies is logged and makes healthy() (→ /readyz) false while the cluster reports fail; back to healthy when it returns', async (t) => {
  const cluster = await startCluster(t);
  if (!cluster) return;
  const lines: Array<{ level: string; obj: object; msg: string }> = [];
  const log = { info: (obj: object, msg: string) => lines.push({ level: 'info', obj, msg }), warn: (obj: object, msg: string) => lines.push({ level: 'warn', obj, msg }), debug() {} };
  const store = new RedisStore(new SessionCodec(['redis-cluster-test-secret-0123456789abcdef']), 'portcullis', { url: cluster.url, keyPrefix: 'ct:', ttlMs: 60_000 }, log);
  t.after(() => store.close());
  await until('connected', 10_000, () => store.healthy());
  for (let i = 0; i < 20; i++) assert.equal(await store.setIfAbsent(`probe:${i}`, 'x', 60_000), true, 'keys in every shard work');
  // Still healthy after the store's own CLUSTER INFO probes (counted by the nodes) while every shard is up.
  const nodes = cluster.ports.map((port) => new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0 }).on('error', () => {}));
  t.after(() => { for (const n of nodes) n.disconnect(); }); // gone before a node is stopped, or if the wait fails
  const infoCalls = async () => {
    let n = 0;
    for (const node of nodes) n += Number(/cmdstat_cluster\|info:calls=(\d+)/.exec(await node.info('commandstats'))?.[1] ?? 0);
    return n;
  };
  const before = await infoCalls();
  await until('a cluster probe by the store', 10_000, async () => await infoCalls() > before, 100);
  for (const n of nodes) n.disconnect();
  assert.equal(store.healthy(), true);

  const victim = cluster.ports[2]!;
  await cluster.stop(victim);
  // Traffic to the dead shard's slots shows which node is gone.
  await Promise.all(Array.from({ length: 20 }, (_, i) => store.exists(`probe:${i}`).catch(() => {})));
  await until('healthy() false once the cluster reports fail', 15_000, () => !store.healthy());
  assert.ok(lines.some((l) => l.level === 'warn' && /cluster state is fail/.test(l.msg)), 'the cluster failure is logged');
  // The node's own connection error may be logged after the cluster state turns fail (a loaded machine, once).
  await until('the unreachable node named in a warning', 15_000, () => lines.some((l) => l.level === 'warn' && /cluster node unreachable/.test(l.msg) && (l.obj as { node?: string }).node === `127.0.0.1:${victim}`));
  assert.equal(lines.filter((l) => /cluster node unreachable/.test(l.msg)).length, 1, 'logged once per outage, not per failed attempt');

  await cluster.start(victim);
  await until('healthy() again once the node is back', 20_000, () => store.healthy());
  assert.ok(lines.some((l) => l.level === 'info' && /cluster state ok again/.test(l.msg)), 'the recovery is logged');
});
