// The demo/test echo upstream: what it echoes, how it misbehaves on purpose, and that close() ends everything.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { test } from 'node:test';
import { Agent, Client, errors, request } from 'undici';
import { WebSocket } from 'ws';
import { startEchoUpstream } from '../../dev/devidp/upstream.js';
import { startTestUpstream } from '../helpers/upstream.js';

test('echoes method, raw url and headers as JSON, and records the request', async (t) => {
  const upstream = await startTestUpstream(t);
  // Dispatcher.request keeps a raw `path` as written; undici's top-level request() and fetch()
  // both go through new URL() and would normalise the dot segments away.
  const client = new Client(upstream.url);
  t.after(() => client.close());
  const res = await client.request({
    path: '/a/../b/%2e%2e/c?x=1',
    method: 'POST',
    headers: { 'x-forwarded-user': 'alice', accept: 'application/json', 'X-Mixed-Case': 'v' },
    body: 'ignored body',
  });
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  const echo = (await res.body.json()) as { method: string; url: string; headers: Record<string, string> };
  assert.equal(echo.method, 'POST');
  assert.equal(echo.url, '/a/../b/%2e%2e/c?x=1');
  assert.equal(echo.headers['x-forwarded-user'], 'alice');

  assert.equal(upstream.requests.length, 1);
  const [recorded] = upstream.requests;
  assert.equal(recorded!.url, '/a/../b/%2e%2e/c?x=1');
  assert.ok(recorded!.rawHeaders.includes('X-Mixed-Case'), 'raw header names keep their case');
});

test('a browser gets an escaped HTML page with the identity headers first', async (t) => {
  const upstream = await startTestUpstream(t);
  const res = await request(`${upstream.url}/<script>?q="x"`, {
    headers: {
      accept: 'text/html,application/xhtml+xml',
      'x-forwarded-email': 'alice@example.com',
      'x-forwarded-groups': '<b>admin</b>,dev',
    },
  });
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/html/);
  const html = await res.body.text();
  assert.match(html, /<title>Portcullis demo upstream<\/title>/);
  assert.doesNotMatch(html, /<script>|<b>admin/);
  assert.match(html, /&#60;b&#62;admin&#60;\/b&#62;,dev/);
  assert.ok(html.indexOf('alice@example.com') < html.indexOf('All headers'), 'identity is shown before the header dump');
  assert.match(html, /x-forwarded-user<\/th><td><em>\(not sent\)/);
});

test('/__status/NNN answers with that status, /__slow waits', async (t) => {
  const upstream = await startTestUpstream(t);
  const teapot = await request(`${upstream.url}/__status/418`);
  assert.equal(teapot.statusCode, 418);
  await teapot.body.dump();
  const noContent = await request(`${upstream.url}/__status/204`);
  assert.equal(noContent.statusCode, 204);
  assert.equal(await noContent.body.text(), '');

  const started = Date.now();
  const slow = await request(`${upstream.url}/__slow?ms=300`);
  assert.equal(slow.statusCode, 200);
  await slow.body.dump();
  assert.ok(Date.now() - started >= 290);
});

test('/__reset drops the connection and /__hang never answers', async (t) => {
  const upstream = await startTestUpstream(t);
  await assert.rejects(request(`${upstream.url}/__reset`), (err: Error) => err instanceof errors.SocketError || /other side closed|ECONNRESET/.test(err.message));
  await assert.rejects(
    request(`${upstream.url}/__hang`, { headersTimeout: 300 }),
    (err: Error) => err instanceof errors.HeadersTimeoutError,
  );
});

test('/__stream sends chunks 100 ms apart', async (t) => {
  const upstream = await startTestUpstream(t);
  const started = Date.now();
  const res = await request(`${upstream.url}/__stream?chunks=3`);
  assert.equal(await res.body.text(), 'chunk 1\nchunk 2\nchunk 3\n');
  assert.ok(Date.now() - started >= 190);
});

test('WebSocket: first message is the upgrade request, then an echo', async (t) => {
  const upstream = await startTestUpstream(t);
  const ws = new WebSocket(`${upstream.url.replace('http', 'ws')}/socket?room=1`, { headers: { 'x-forwarded-user': 'alice' } });
  t.after(() => ws.terminate());
  const messages: string[] = [];
  const two = new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      messages.push(String(data));
      if (messages.length === 2) resolve();
    });
  });
  await once(ws, 'open');
  ws.send('hello');
  await two;
  const hello = JSON.parse(messages[0]!) as { method: string; url: string; headers: Record<string, string> };
  assert.equal(hello.url, '/socket?room=1');
  assert.equal(hello.headers['x-forwarded-user'], 'alice');
  assert.equal(hello.headers.upgrade, 'websocket');
  assert.equal(messages[1], 'hello');
  assert.equal(upstream.requests.at(-1)?.url, '/socket?room=1');
});

test('close() ends hanging requests, streams and WebSockets', async () => {
  const upstream = await startEchoUpstream();
  const agent = new Agent();
  const hanging = request(`${upstream.url}/__hang`, { dispatcher: agent }).then(() => 'answered', () => 'closed');
  const streaming = await request(`${upstream.url}/__stream`, { dispatcher: agent });
  const streamDone = streaming.body.text().then(() => 'ended', () => 'closed');
  const ws = new WebSocket(`${upstream.url.replace('http', 'ws')}/`);
  await once(ws, 'open');
  const wsClosed = once(ws, 'close');
  const idle = connect(upstream.port, '127.0.0.1');
  await once(idle, 'connect');
  const idleClosed = once(idle, 'close');
  await new Promise((r) => setTimeout(r, 50));

  const started = Date.now();
  await upstream.close();
  assert.equal(await hanging, 'closed');
  assert.ok(['ended', 'closed'].includes(await streamDone));
  await wsClosed;
  await idleClosed;
  assert.ok(Date.now() - started < 2000, 'nothing waited for a timeout');
  await agent.close();
});
