// Graceful shutdown of a real process: SIGTERM stops accepting, /readyz answers 503, a streaming
// response in flight finishes, and the process exits 0; a request outliving the grace period is cut
// and the process still exits 0 on time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { request } from 'undici';
import { freePort } from '../helpers/stack.js';
import { startTestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { configFile, get, processConfig, spawnPortcullis, waitFor } from './support.js';

async function startProcess(t: Parameters<typeof startTestIdp>[0], grace: string) {
  const port = await freePort();
  const metricsPort = await freePort();
  const idp = await startTestIdp(t, { redirectUris: [`http://127.0.0.1:${port}/oauth2/callback`] });
  const upstream = await startTestUpstream(t);
  const file = configFile(t, processConfig({
    port, metricsPort, issuer: idp.issuer,
    routes: [{ name: 'public', match: { path: '/' }, upstream: upstream.url, auth: 'public' }],
    extra: { shutdownGracePeriod: grace },
  }));
  const p = spawnPortcullis(t, file.path);
  await p.waitForLog((l) => l.msg === 'portcullis listening');
  const base = `http://127.0.0.1:${port}`;
  const admin = `http://127.0.0.1:${metricsPort}`;
  await waitFor(async () => (await get(`${admin}/readyz`)).status === 200, 10_000, 'ready');
  return { p, base, admin, port, upstream };
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true));
  });
}

test('SIGTERM mid-stream: no new connections, /readyz 503, the whole streamed body arrives, exit 0', async (t) => {
  const { p, base, admin, port } = await startProcess(t, '10s');
  const res = await request(`${base}/__stream?chunks=20`);
  assert.equal(res.statusCode, 200);
  const chunks: string[] = [];
  let first!: () => void;
  const gotFirst = new Promise<void>((r) => { first = r; });
  const body = (async () => {
    for await (const c of res.body) { chunks.push(String(c)); first(); }
    return chunks.join('');
  })();
  await gotFirst;
  const t0 = Date.now();
  p.signal('SIGTERM');
  await p.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('draining'));
  const ready = await get(`${admin}/readyz`);
  assert.equal(ready.status, 503, 'not ready while draining');
  assert.match(ready.body, /draining/);
  assert.equal(await refused(port), true, 'the public port no longer accepts connections');
  const text = await body;
  const lines = text.trim().split('\n');
  assert.equal(lines.length, 20, text);
  assert.equal(lines.at(-1), 'chunk 20');
  const { code, at } = await p.exited;
  assert.equal(code, 0);
  assert.ok(at - t0 < 5_000, `exited ${at - t0} ms after SIGTERM`);
});

test('a request outliving shutdownGracePeriod is cut at the grace period and the process still exits 0', async (t) => {
  const { p, base, upstream } = await startProcess(t, '1s');
  const before = upstream.requests.length;
  const hanging = request(`${base}/__hang`).then((r) => r.body.text().then(() => 'answered'), (err: Error) => `cut: ${err.message}`);
  await waitFor(() => upstream.requests.length > before, 5_000, 'the upstream to receive the request');
  const t0 = Date.now();
  p.signal('SIGTERM');
  const { code, at } = await p.exited;
  assert.equal(code, 0);
  const took = at - t0;
  assert.ok(took >= 900 && took < 2_500, `exit ${took} ms after SIGTERM (grace 1 s)`);
  assert.match(await hanging, /^cut/, 'the hanging request was cut, not answered');
  assert.ok(p.logs.some((l) => l.msg === 'grace period over: closing the connections still open'));
});
