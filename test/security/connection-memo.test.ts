// What a keep-alive connection repeats is computed once (routing/connection-memo.ts): the parsed
// Cookie header, the Cookie header the upstream gets, the session cache key. A memo must never let
// one request's cookie decide another's: the table below sends, on ONE connection, cookies that
// change from request to request — another user's, a tampered copy, none, extra cookies beside
// ours — and checks that each request is decided, and forwarded, by its own Cookie header.
import { test } from 'node:test';
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
