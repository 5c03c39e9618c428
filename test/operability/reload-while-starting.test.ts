// A SIGHUP that arrives while a process is still starting must not kill it (Node's default for
// SIGHUP is to exit). Found in a chaos soak: with `workers`, the primary passed a reload on to a
// worker it had just forked, the worker died before installing its handler, and the crash counted
// towards the crash-loop back-off. Now the primary holds the signal until the worker reports up, and
// a process installs its signal handling before it starts serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { freePort } from '../helpers/stack.js';
import { startTestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { holdSignals, type RunningServer } from '../../src/server.js';
import { alive, configFile, get, processConfig, spawnPortcullis, PROCESS_START_MS, waitFor, type LogLine } from './support.js';

const listeningPids = (logs: LogLine[]) => new Set(logs.filter((l) => l.msg === 'portcullis listening').map((l) => l.pid!));

test('workers: 2 — SIGHUPs to the primary while its workers start: no worker dies, each reloads once it is up', async (t) => {
  const port = await freePort();
  const metricsPort = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const idp = await startTestIdp(t, { redirectUris: [`${base}/oauth2/callback`] });
  const upstream = await startTestUpstream(t);
  const file = configFile(t, processConfig({
    port, metricsPort, issuer: idp.issuer,
    routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url }],
    extra: { workers: 2, shutdownGracePeriod: '2s' },
  }));
  const p = spawnPortcullis(t, file.path);
  t.after(() => { for (const pid of listeningPids(p.logs)) if (alive(pid)) process.kill(pid, 'SIGKILL'); });

  // The primary has forked its workers; they are loading and not yet listening. Edit the file and
  // keep sending SIGHUP until both workers are up.
  await p.waitForLog((l) => l.msg === 'portcullis primary started', 20_000);
  assert.equal(listeningPids(p.logs).size, 0, 'the workers are still starting when the SIGHUPs come');
  const raw = JSON.parse(readFileSync(file.path, 'utf8')) as { routes: unknown[] };
  file.write({ ...raw, routes: [{ name: 'extra', match: { path: '/extra' }, upstream: upstream.url, auth: 'public' }, ...raw.routes] });
  let sent = 0;
  while (listeningPids(p.logs).size < 2 && sent < 400) {
    p.signal('SIGHUP');
    sent += 1;
    await new Promise((r) => setTimeout(r, 25));
  }
  await waitFor(() => listeningPids(p.logs).size === 2, PROCESS_START_MS, 'two workers listening');
  assert.equal(p.logs.filter((l) => l.msg === 'worker exited unexpectedly; starting a new one').length, 0, 'no worker died');

  await waitFor(() => p.logs.filter((l) => l.msg === 'SIGHUP held while the worker was starting: sent now').length === 2, 10_000, 'the held SIGHUP sent to each worker once it was up');
  await waitFor(async () => (await get(`${base}/extra/x`, { accept: 'application/json' })).status === 200, 10_000, 'the edited file in force');
  for (let i = 0; i < 4; i++) assert.equal((await get(`${base}/extra/${i}`, { accept: 'application/json' })).status, 200, 'the new public route on every worker');

  const metrics = await get(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.match(metrics.body, /^portcullis_worker_restarts_total 0$/m);
  assert.equal(listeningPids(p.logs).size, 2, 'still the first two workers');

  p.signal('SIGTERM');
  const { code } = await waitFor(() => p.exited, 15_000, 'primary exit');
  assert.equal(code, 0);
});

test('holdSignals: a SIGHUP before the server is attached is applied once it is, not lost and not fatal', async (t) => {
  const gate = holdSignals();
  let reloads = 0;
  const logged: string[] = [];
  const fake = {
    reload: () => { reloads += 1; },
    app: { log: { info: (m: string) => logged.push(m), error: (_o: unknown, m: string) => logged.push(m) } },
    drain: async () => 0,
  } as unknown as RunningServer;
  process.kill(process.pid, 'SIGHUP');
  await new Promise((r) => setTimeout(r, 50)); // a signal to oneself is handled on a later turn of the loop
  assert.equal(reloads, 0, 'nothing to reload yet');
  gate.attach(fake, { onExit: () => {} });
  assert.equal(reloads, 1, 'the held SIGHUP reloads once the server is up');
  assert.deepEqual(logged, ['SIGHUP received while starting: reloading the config file now']);
  process.kill(process.pid, 'SIGHUP');
  await waitFor(() => reloads === 2, 2_000, 'a later SIGHUP reloads at once');
  t.after(() => { process.removeAllListeners('SIGHUP'); process.removeAllListeners('SIGTERM'); process.removeAllListeners('SIGINT'); });
});
