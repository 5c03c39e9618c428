// HTTP/1.1 pipelining (several requests written at once on one connection): each is decided on its
// own, answered in order, and reaches the upstream in the order sent; a request behind an answer
// that closes the connection (a refused upload whose body was not read, the client's own
// `Connection: close`) is never handled — node:http hands such requests over anyway, and an
// upstream that acted on one would do so without the client ever getting the answer (it retries).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { pipelined, toHead } from '../helpers/raw-http.js';
import { until } from '../helpers/wait.js';
import { BOB } from './support.js';

test('pipelined requests: decided each on its own, answered in order, nothing handled behind a closing answer', { timeout: 60_000 }, async (t) => {
  const s = await startStack(t);
  const port = Number(new URL(s.url).port);
  const cookie = `portcullis=${(await loginViaHttp(`${s.url}/`, BOB)).jar.get('portcullis', s.url)}`;
  const host: [string, string] = ['Host', `127.0.0.1:${port}`];
  const get = (path: string, extra: Array<[string, string]> = []) => ({ method: 'GET', raw: toHead(`GET ${path} HTTP/1.1`, [host, ['Accept', 'application/json'], ['Cookie', cookie], ['X-Test-Id', path], ...extra]) });
  const seenPaths = (from: number) => s.upstream.requests.slice(from).map((r) => r.url);

  await t.test('refused, then allowed, then refused, then allowed: four answers in order, the upstream gets the allowed two in order', async () => {
    const before = s.upstream.requests.length;
    const answers = await pipelined(port, [get('/admin/a'), get('/app/b?__slow'), get('/admin/c'), get('/app/d')]);
    assert.deepEqual(answers.map((a) => a.status), [403, 200, 403, 200]);
    assert.match(answers[1]!.text, /"\/app\/b\?__slow"/, 'the second answer is the second request\'s');
    assert.match(answers[3]!.text, /"\/app\/d"/, 'the fourth answer is the fourth request\'s');
    assert.deepEqual(seenPaths(before), ['/app/b?__slow', '/app/d']);
  });

  await t.test('a slow allowed request first: the next one reaches the upstream only after it was answered', async () => {
    const before = s.upstream.requests.length;
    const pending = pipelined(port, [get('/__slow?ms=600'), { method: 'POST', raw: toHead('POST /app/after HTTP/1.1', [host, ['Accept', 'application/json'], ['Cookie', cookie], ['Content-Length', '2']]) + 'ok' }]);
    await until('the slow request reached the upstream', 5_000, () => s.upstream.requests.length > before);
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual(seenPaths(before), ['/__slow?ms=600'], 'the POST waits for the answer before it (not sent beside it)');
    const answers = await pending;
    assert.deepEqual(answers.map((a) => a.status), [200, 200]);
    assert.deepEqual(seenPaths(before), ['/__slow?ms=600', '/app/after'], 'in the order sent');
  });

  await t.test('a refused upload whose body was not read closes the connection: the request behind it is never handled', async () => {
    const before = s.upstream.requests.length;
    // Small enough to arrive with the head: node:http parses the request behind it in the same go.
    const body = 'x'.repeat(1000);
    const upload = { method: 'POST', raw: toHead('POST /admin/upload HTTP/1.1', [host, ['Accept', 'application/json'], ['Cookie', cookie], ['Content-Length', String(body.length)]]) + body };
    const answers = await pipelined(port, [upload, get('/app/behind-upload')]);
    assert.equal(answers[0]!.status, 403);
    assert.match(answers[0]!.text, /connection: close/i);
    assert.equal(answers.length, 1, 'no answer for the request behind it');
    assert.deepEqual(seenPaths(before), [], 'and the upstream never saw it');
  });

  await t.test('the client\'s own Connection: close ends the pipeline there', async () => {
    const before = s.upstream.requests.length;
    const answers = await pipelined(port, [get('/app/last', [['Connection', 'close']]), get('/app/never')]);
    assert.deepEqual(answers.map((a) => a.status), [200]);
    assert.deepEqual(seenPaths(before), ['/app/last']);
  });
});
