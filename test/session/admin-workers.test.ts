// workers: 2 — the admin endpoints on the cluster primary's metrics listener: the primary checks the
// token, forwards each operation to one worker over IPC, and a revoke by sub ends the session on
// every worker (Redis entries deleted, the other worker's cache evicted through the primary).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers/stack.js';
import { startTestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { startRedis } from '../helpers/redis.js';
import { CookieJar, loginViaHttp } from '../helpers/browserless-login.js';
import { alive, configFile, get, processConfig, spawnPortcullis, PROCESS_START_MS, waitFor, type LogLine } from '../operability/support.js';
import { adminRequest } from '../helpers/admin.js';

const ALICE = { user: 'alice', password: 'alice-password' };
const TOKEN = 'admin-token-workers-0123456789-abcdef';

const listeningPids = (logs: LogLine[]) => new Set(logs.filter((l) => l.msg === 'portcullis listening').map((l) => l.pid!));

async function admin(base: string, method: 'GET' | 'POST', path: string, body?: unknown, token: string | null = TOKEN) {
  return adminRequest(base, token, method, path, body);
}

test('admin with workers: 2 — the primary lists alice\'s session and revokes it through a worker; refused on both workers; wrong token → 401', async (t) => {
  const redis = await startRedis(t);
  if (!redis) return;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-admin-workers-'));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);

  const port = await freePort();
  const metricsPort = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const adminBase = `http://127.0.0.1:${metricsPort}`;
  const idp = await startTestIdp(t, { redirectUris: [`${base}/oauth2/callback`] });
  const upstream = await startTestUpstream(t);
  // processConfig's session secret, with the Redis store added.
  const raw = processConfig({ port, metricsPort, issuer: idp.issuer, routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url }] }) as Record<string, unknown> & { session: Record<string, unknown> };
  const file = configFile(t, {
    ...raw,
    workers: 2, shutdownGracePeriod: '5s',
    session: { ...raw.session, store: 'redis', redis: { url: redis.url } },
    admin: { tokenFile },
  });
  const p = spawnPortcullis(t, file.path);
  const workerPids = () => listeningPids(p.logs);
  t.after(() => { for (const pid of workerPids()) if (alive(pid)) process.kill(pid, 'SIGKILL'); });
  await waitFor(() => workerPids().size === 2, PROCESS_START_MS, 'two workers listening');
  await waitFor(async () => (await get(`${adminBase}/readyz`)).status === 200, 15_000, 'the primary to report ready');
  const workers = [...workerPids()];

  // Wrong or missing token → 401 from the primary itself; the token is never logged.
  for (const token of [null, 'wrong', `${TOKEN}x`]) {
    const l = await admin(adminBase, 'GET', '/admin/sessions?sub=alice', undefined, token);
    assert.equal(l.status, 401, `list with ${JSON.stringify(token)}`);
    assert.match(String(l.headers['www-authenticate']), /^Bearer/);
    assert.equal((await admin(adminBase, 'POST', '/admin/sessions/revoke', { sub: 'alice' }, token)).status, 401, `revoke with ${JSON.stringify(token)}`);
  }
  assert.equal((await admin(adminBase, 'POST', '/admin/sessions/revoke', {})).status, 400, 'a bad request is answered by the worker: 400');

  const alice = await loginViaHttp(`${base}/`, ALICE);
  assert.equal(alice.status, 200);
  const bob = await loginViaHttp(`${base}/`, { user: 'bob', password: 'bob-password', jar: new CookieJar() });
  assert.equal(bob.status, 200);
  // Both workers serve (and cache) alice's session: fresh connections take turns.
  const since = p.logs.length;
  for (let i = 0; i < 10; i++) assert.equal((await get(`${base}/before/${i}`, { accept: 'application/json', cookie: alice.jar.header(base) })).status, 200);
  const served = new Set(p.logs.slice(since).filter((l) => l.audit === true && l.decision === 'allow').map((l) => l.pid));
  assert.deepEqual([...served].sort(), [...workers].sort(), 'both workers served alice');

  const list = await admin(adminBase, 'GET', '/admin/sessions?sub=alice');
  assert.equal(list.status, 200, list.text);
  assert.equal(list.headers['cache-control'], 'no-store');
  assert.equal(list.json.store, 'redis');
  assert.equal(list.json.sessions.length, 1);
  assert.equal(list.json.sessions[0].sub, 'alice');
  assert.match(list.json.sessions[0].id, /^[0-9a-f]{64}$/);
  assert.doesNotMatch(list.text, /eyJ|token/i, 'never a token');

  const revoke = await admin(adminBase, 'POST', '/admin/sessions/revoke', { sub: 'alice' });
  assert.equal(revoke.status, 200, revoke.text);
  assert.equal(revoke.json.revoked, true);
  assert.equal(revoke.json.sessions, 1);
  const audit = await p.waitForLog((l) => l.audit === true && l.action === 'revoke' && (l as { by?: string }).by === 'admin');
  assert.ok(workers.includes(audit.pid!), 'a worker ran the revoke');

  // Refused on every worker afterwards; bob's session is untouched.
  const after = p.logs.length;
  for (let i = 0; i < 10; i++) {
    assert.equal((await get(`${base}/after/${i}`, { accept: 'application/json', cookie: alice.jar.header(base) })).status, 401, `request ${i} after the revoke`);
  }
  const refusedBy = new Set(p.logs.slice(after).filter((l) => l.pid !== undefined && l.pid !== p.pid).map((l) => l.pid));
  assert.deepEqual([...refusedBy].sort(), [...workers].sort(), 'both workers refused alice');
  for (let i = 0; i < 4; i++) assert.equal((await get(`${base}/bob/${i}`, { accept: 'application/json', cookie: bob.jar.header(base) })).status, 200);
  assert.equal((await admin(adminBase, 'GET', '/admin/sessions?sub=alice')).json.sessions.length, 0);
  assert.ok(!p.logs.some((l) => JSON.stringify(l).includes(TOKEN)), 'the token is never logged');
});
