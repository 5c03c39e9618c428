// What a keep-alive connection repeats is computed once (routing/connection-memo.ts): the parsed
// Cookie header, the Cookie header the upstream gets, the session cache key. A memo must never let
// one request's cookie decide another's: the table below sends, on ONE connection, cookies that
// change from request to request — another user's, a tampered copy, none, extra cookies beside
// ours — and checks that each request is decided, and forwarded, by its own Cookie header: plain
// requests, forward-auth (a fronting proxy's keep-alive connection carries many users), and a
// WebSocket upgrade after plain requests on the same connection.
import { test } from 'node:test';
import { connect, type Socket } from 'node:net';
import assert from 'node:assert/strict';
import { ConnectionMemo, memoized } from '../../src/routing/connection-memo.js';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { pipelined, toHead } from '../helpers/raw-http.js';
import { ALICE, BOB } from './support.js';

test('ConnectionMemo: the result is reused only for the very same input, per function', () => {
  const calls: string[] = [];
  const upper = (s: string) => { calls.push(s); return s.toUpperCase(); };
  const lower = (s: string) => { calls.push(`l:${s}`); return s.toLowerCase(); };
  const m = new ConnectionMemo();
  assert.equal(m.of(upper, 'abc'), 'ABC');
  assert.equal(m.of(upper, 'ab' + 'c'), 'ABC', 'an equal string built another way is the same input');
  assert.equal(m.of(lower, 'abc'), 'abc', 'another function has its own slot');
  assert.equal(m.of(upper, 'abd'), 'ABD');
  assert.equal(m.of(upper, 'abc'), 'ABC', 'one slot per function: the last input only');
  assert.deepEqual(calls, ['abc', 'l:abc', 'abd', 'abc']);
  assert.equal(memoized(undefined, upper, 'x'), 'X', 'no memo: computed');
});

test('one connection, changing cookies: each request is decided and forwarded by its own Cookie header', { timeout: 60_000 }, async (t) => {
  const s = await startStack(t);
  const port = Number(new URL(s.url).port);
  const alice = (await loginViaHttp(`${s.url}/`, ALICE)).jar.get('portcullis', s.url)!;
  const bob = (await loginViaHttp(`${s.url}/`, BOB)).jar.get('portcullis', s.url)!;
  assert.ok(alice && bob && alice !== bob);
  // One character changed in the middle: the same length, the same start and end.
  const mid = alice.length >> 1;
  const tampered = alice.slice(0, mid) + (alice[mid] === 'A' ? 'B' : 'A') + alice.slice(mid + 1);
  const rows: Array<{ cookie: string | undefined; user: string | undefined; upstreamCookie?: string }> = [
    { cookie: `portcullis=${alice}`, user: 'alice' },
    { cookie: `portcullis=${alice}`, user: 'alice' },
    { cookie: `portcullis=${bob}`, user: 'bob' },
    { cookie: `portcullis=${alice}`, user: 'alice' },
    { cookie: `portcullis=${tampered}`, user: undefined },
    { cookie: `portcullis=${alice}`, user: 'alice' },
    { cookie: undefined, user: undefined },
    { cookie: `theme=dark; portcullis=${alice}; lang=en`, user: 'alice', upstreamCookie: 'theme=dark; lang=en' },
    { cookie: `portcullis=${alice}; theme=light`, user: 'alice', upstreamCookie: 'theme=light' },
    { cookie: `theme=dark; portcullis=${bob}; lang=en`, user: 'bob', upstreamCookie: 'theme=dark; lang=en' },
    { cookie: `portcullis=${alice}`, user: 'alice' },
  ];
  const host: [string, string] = ['Host', `127.0.0.1:${port}`];
  const before = s.upstream.requests.length;
  const answers = await pipelined(port, rows.map((row, i) => ({
    method: 'GET',
    raw: toHead(`GET /app/row-${i} HTTP/1.1`, [host, ['Accept', 'application/json'], ...(row.cookie ? [['Cookie', row.cookie] as [string, string]] : [])]),
  })));
  assert.deepEqual(answers.map((a) => a.status), rows.map((r) => (r.user ? 200 : 401)), 'signed in exactly where the row\'s own cookie says');
  const seen = s.upstream.requests.slice(before);
  const allowed = rows.map((r, i) => ({ ...r, i })).filter((r) => r.user);
  assert.deepEqual(seen.map((r) => r.url), allowed.map((r) => `/app/row-${r.i}`));
  for (const [k, r] of allowed.entries()) {
    assert.equal(seen[k]!.headers['x-forwarded-user'], r.user, `row ${r.i}: the identity of its own cookie`);
    assert.equal(seen[k]!.headers.cookie, r.upstreamCookie, `row ${r.i}: the upstream gets its own other cookies, never ours`);
  }
});

test('forward-auth on one keep-alive connection (nginx auth_request with upstream keepalive): many users\' cookies in turn, each judged by its own', { timeout: 60_000 }, async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.trustProxy = ['127.0.0.1', '::1']; } });
  const port = Number(new URL(s.url).port);
  const alice = (await loginViaHttp(`${s.url}/`, ALICE)).jar.get('portcullis', s.url)!;
  const bob = (await loginViaHttp(`${s.url}/`, BOB)).jar.get('portcullis', s.url)!;
  const mid = bob.length >> 1;
  const tampered = bob.slice(0, mid) + (bob[mid] === 'A' ? 'B' : 'A') + bob.slice(mid + 1);
  // /admin needs the admin group: alice 202, bob 403, no or a broken session 401.
  const rows: Array<{ cookie: string | undefined; status: number; user?: string }> = [
    { cookie: `portcullis=${alice}`, status: 202, user: 'alice' },
    { cookie: `portcullis=${bob}`, status: 403 },
    { cookie: `portcullis=${alice}`, status: 202, user: 'alice' },
    { cookie: `portcullis=${tampered}`, status: 401 },
    { cookie: `portcullis=${alice}`, status: 202, user: 'alice' },
    { cookie: undefined, status: 401 },
    { cookie: `other=1; portcullis=${alice}`, status: 202, user: 'alice' },
    { cookie: `portcullis=${bob}`, status: 403 },
  ];
  const answers = await pipelined(port, rows.map((row) => ({
    method: 'GET',
    raw: toHead('GET /oauth2/auth HTTP/1.1', [
      ['Host', `127.0.0.1:${port}`], ['Accept', 'application/json'], ['X-Forwarded-Method', 'GET'], ['X-Forwarded-Proto', 'http'],
      ['X-Forwarded-Host', `127.0.0.1:${port}`], ['X-Forwarded-Uri', '/admin/x'], ...(row.cookie ? [['Cookie', row.cookie] as [string, string]] : []),
    ]),
  })));
  assert.deepEqual(answers.map((a) => a.status), rows.map((r) => r.status));
  for (const [i, a] of answers.entries()) {
    const user = /^x-forwarded-user: (.*)\r$/im.exec(a.text)?.[1];
    assert.equal(user, rows[i]!.user, `row ${i}: the identity of its own cookie, or none`);
  }
});

/** Writes `text` on `sock` and resolves with the next complete answer's head (and body, by Content-Length; a 101 has none). */
function nextAnswer(sock: Socket, text: string): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    let data = '';
    const onData = (d: Buffer) => {
      data += d.toString('latin1');
      const end = data.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = data.slice(0, end);
      const status = Number(head.split(' ')[1]);
      const length = Number(/^content-length: (\d+)\r?$/im.exec(head)?.[1] ?? 0);
      if (status !== 101 && data.length < end + 4 + length) return;
      sock.off('data', onData);
      resolve({ status, head });
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.write(text);
  });
}

test('a WebSocket upgrade after plain requests on the same connection is judged by its own cookie', { timeout: 60_000 }, async (t) => {
  const s = await startStack(t, { routes: [{ name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true }] });
  const port = Number(new URL(s.url).port);
  const alice = (await loginViaHttp(`${s.url}/`, ALICE)).jar.get('portcullis', s.url)!;
  const bob = (await loginViaHttp(`${s.url}/`, BOB)).jar.get('portcullis', s.url)!;
  const mid = bob.length >> 1;
  const tampered = bob.slice(0, mid) + (bob[mid] === 'A' ? 'B' : 'A') + bob.slice(mid + 1);
  const plain = (cookie: string) => `GET /app/plain HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: application/json\r\nCookie: portcullis=${cookie}\r\n\r\n`;
  const upgrade = (cookie: string) => `GET /app/ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: ${s.url}\r\nCookie: portcullis=${cookie}\r\n\r\n`;
  for (const [then, status, user] of [[bob, 101, 'bob'], [tampered, 401, undefined]] as const) {
    const sock = connect(port, '127.0.0.1');
    t.after(() => sock.destroy());
    await new Promise((r) => sock.once('connect', r));
    assert.equal((await nextAnswer(sock, plain(alice))).status, 200, 'alice first, on this connection');
    assert.equal((await nextAnswer(sock, plain(alice))).status, 200);
    const before = s.upstream.requests.length;
    const answer = await nextAnswer(sock, upgrade(then));
    assert.equal(answer.status, status, `the upgrade is decided by its own cookie (${user ?? 'a tampered one'})`);
    const upgrades = s.upstream.requests.slice(before).filter((r) => r.url === '/app/ws');
    assert.deepEqual(upgrades.map((r) => r.headers['x-forwarded-user']), user ? [user] : [], 'the upstream sees its own user, or no upgrade at all');
    sock.destroy();
  }
});
