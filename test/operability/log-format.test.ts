// Logs are JSON lines for collectors, and readable for a person at a terminal (pino-pretty), with
// PORTCULLIS_LOG_FORMAT=json|pretty to override the guess.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logDestination } from '../../src/logging.js';
import { freePort } from '../helpers/stack.js';
import { startTestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { configFile, processConfig, spawnPortcullis, PROCESS_START_MS, waitFor } from './support.js';

test('the format follows the terminal, and PORTCULLIS_LOG_FORMAT overrides it', () => {
  assert.equal(logDestination({}, { isTTY: false }), undefined, 'not a terminal: JSON (pino\'s own stdout)');
  assert.equal(logDestination({}, {}), undefined);
  assert.ok(logDestination({}, { isTTY: true }), 'a terminal: pretty');
  assert.equal(logDestination({ PORTCULLIS_LOG_FORMAT: 'json' }, { isTTY: true }), undefined, 'json wins over the terminal');
  assert.ok(logDestination({ PORTCULLIS_LOG_FORMAT: 'pretty' }, { isTTY: false }), 'pretty without a terminal');
});

test('a process with PORTCULLIS_LOG_FORMAT=pretty writes readable lines, not JSON; secrets stay redacted', async (t) => {
  const port = await freePort();
  const metricsPort = await freePort();
  const idp = await startTestIdp(t, { redirectUris: [`http://127.0.0.1:${port}/oauth2/callback`] });
  const upstream = await startTestUpstream(t);
  const file = configFile(t, processConfig({ port, metricsPort, issuer: idp.issuer, routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url }] }));
  const p = spawnPortcullis(t, file.path, { PORTCULLIS_LOG_FORMAT: 'pretty' });
  const listening = await p.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('portcullis listening'), PROCESS_START_MS);
  assert.match(String(listening.msg), /INFO/, 'level in words');
  assert.doesNotMatch(String(listening.msg), /^\{/, 'not a JSON line');
  // A request with credentials that the proxy logs at debug: the secret does not reach the terminal.
  await fetch(`http://127.0.0.1:${port}/x`, { headers: { cookie: 'portcullis=SECRET-COOKIE-VALUE', authorization: 'Bearer SECRET-TOKEN' } });
  await waitFor(() => p.logs.some((l) => String(l.msg).includes('/x') || String(l.msg).includes('unauthenticated')), 5_000, 'a line about the request');
  const all = p.logs.map((l) => String(l.msg)).join('\n');
  assert.doesNotMatch(all, /SECRET-COOKIE-VALUE|SECRET-TOKEN/);
  assert.ok(p.logs.every((l) => l.level === undefined), 'no line parsed as JSON');
  p.signal('SIGTERM');
  await p.exited;
});
