// workers: 2 — a node:cluster primary and two workers on one port: both serve a signed-in user,
// /metrics on the primary aggregates them, a crashed worker is replaced, a back-channel logout
// handled by one worker ends the session in all, and SIGTERM ends everything with exit 0.
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { freePort } from '../helpers/stack.js';
import { startTestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { followRedirects, loginViaHttp, parseForms } from '../helpers/browserless-login.js';
import { alive, configFile, get, processConfig, spawnPortcullis, PROCESS_START_MS, waitFor, type LogLine } from './support.js';

const ALICE = { user: 'alice', password: 'alice-password' };

const listeningPids = (logs: LogLine[]) => new Set(logs.filter((l) => l.msg === 'portcullis listening').map((l) => l.pid!));

function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

test('workers: 2 share the port, are restarted after a crash, aggregate their metrics, and stop together on SIGTERM', async (t) => {
  const port = await freePort();
  const metricsPort = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const idp = await startTestIdp(t, { redirectUris: [`${base}/oauth2/callback`], backchannelLogoutUri: `${base}/oauth2/backchannel_logout` });
  const upstream = await startTestUpstream(t);
  const file = configFile(t, processConfig({
    port, metricsPort, issuer: idp.issuer,
    routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url }],
    extra: { workers: 2, shutdownGracePeriod: '5s' },
  }));
  const p = spawnPortcullis(t, file.path);
  const workerPids = () => listeningPids(p.logs);
  t.after(() => { for (const pid of workerPids()) if (alive(pid)) process.kill(pid, 'SIGKILL'); });
  await waitFor(() => workerPids().size === 2, PROCESS_START_MS, 'two workers listening');
  const admin = `http://127.0.0.1:${metricsPort}`;
  await waitFor(async () => (await get(`${admin}/readyz`)).status === 200, 15_000, 'the primary to report ready');
  const first = [...workerPids()];
  assert.ok(!first.includes(p.pid), 'workers are processes of their own');

  // Sign in once; the cookie works on every worker (they share only the session secret).
  const { jar, status } = await loginViaHttp(`${base}/`, ALICE);
  assert.equal(status, 200);
  for (let i = 0; i < 10; i++) {
    const r = await get(`${base}/n/${i}`, { accept: 'application/json', cookie: jar.header(base) });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).headers['x-forwarded-user'], 'alice');
  }
  const served = new Set(p.logs.filter((l) => l.audit === true && l.decision === 'allow').map((l) => l.pid));
  assert.deepEqual([...served].sort(), [...first].sort(), 'both workers served requests');

  // /metrics on the primary sums the workers' counters.
  const metrics = await get(`${admin}/metrics`);
  assert.equal(metrics.status, 200);
  assert.ok((sampleValue(metrics.body, 'portcullis_http_requests_total', { route: 'app', status: '2xx' }) ?? 0) >= 10, metrics.body.slice(0, 500));
  assert.equal(sampleValue(metrics.body, 'portcullis_workers'), 2);
  assert.equal(sampleValue(metrics.body, 'portcullis_idp_ready'), 1);
  assert.equal((await get(`${base}/metrics`, { accept: 'application/json', cookie: jar.header(base) })).body.includes('portcullis_'), false, 'never on the public port');

  // A crashed worker is replaced.
  const victim = first[0]!;
  process.kill(victim, 'SIGKILL');
  await waitFor(() => workerPids().size === 3, 20_000, 'a replacement worker');
  await p.waitForLog((l) => l.msg === 'worker exited unexpectedly; starting a new one');
  for (let i = 0; i < 4; i++) assert.equal((await get(`${base}/after/${i}`, { accept: 'application/json', cookie: jar.header(base) })).status, 200);
  const restarts = await get(`${admin}/metrics`);
  assert.equal(sampleValue(restarts.body, 'portcullis_worker_restarts_total'), 1);

  // SIGHUP to the primary: every worker reloads the file.
  const raw = JSON.parse(readFileSync(file.path, 'utf8')) as { routes: unknown[] };
  file.write({ ...raw, routes: [{ name: 'extra', match: { path: '/extra' }, upstream: upstream.url, auth: 'public' }, ...raw.routes] });
  const reloadedBefore = p.logs.filter((l) => l.msg === 'config reloaded: routes, rules and identity headers swapped').length;
  p.signal('SIGHUP');
  await waitFor(() => p.logs.filter((l) => l.msg === 'config reloaded: routes, rules and identity headers swapped').length === reloadedBefore + 2, 10_000, 'both workers to reload');
  for (let i = 0; i < 4; i++) {
    const r = await get(`${base}/extra/${i}`, { accept: 'application/json' });
    assert.equal(r.status, 200, 'the new public route on every worker');
  }

  // Back-channel logout reaches one worker; the primary relays it and every worker ends the session.
  const page = await followRedirects(`${idp.issuer}/session/end`, jar);
  const form = parseForms(page.body, page.finalUrl)[0]!;
  await followRedirects(form.action, jar, { method: 'POST', body: form.fields.toString(), headers: { origin: idp.issuer } });
  await p.waitForLog((l) => l.msg === 'back-channel logout');
  await waitFor(async () => {
    const statuses = await Promise.all(Array.from({ length: 6 }, (_, i) => get(`${base}/gone/${i}`, { accept: 'application/json', cookie: jar.header(base) }).then((x) => x.status)));
    return statuses.every((st) => st === 401);
  }, 5_000, 'the revoked session to be refused by every worker');

  // SIGTERM: the primary drains both workers and exits 0; nothing is left running.
  const live = [...workerPids()].filter(alive);
  assert.equal(live.length, 2);
  p.signal('SIGTERM');
  const { code } = await waitFor(() => p.exited, 15_000, 'primary exit');
  assert.equal(code, 0);
  await waitFor(() => live.every((pid) => !alive(pid)), 5_000, 'workers gone');
});
