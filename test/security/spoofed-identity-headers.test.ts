// Attack: the client sends the identity headers itself (any spelling, any route, any method), tries
// to get the injected ones dropped as hop-by-hop, or hopes Portcullis's own cookies leak upstream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import type { RecordedRequest } from '../helpers/upstream.js';
import { ALICE, rawRequest, rawSocket, statusOf } from './support.js';

const ROUTES = [
  { name: 'public', match: { path: '/public' }, upstream: '{upstream}', auth: 'public' },
  { name: 'admin', match: { path: '/admin' }, upstream: '{upstream}', allow: { claim: 'groups', contains: 'admin' } },
  {
    name: 'app', match: { path: '/' }, upstream: '{upstream}', websocket: true,
    headers: { 'X-WEBAUTH-USER': '{preferred_username}', 'X-WEBAUTH-EMAIL': '{email}' },
  },
];

/** Every spelling a client might try; the values are all recognisable as forged. */
const SPOOFED: string[] = [
  'X-Forwarded-User', 'mallory',
  'x-forwarded-email', 'mallory@evil.example',
  'X-FORWARDED-GROUPS', 'admin',
  'X_Forwarded_User', 'mallory',
  'x_forwarded_groups', 'admin',
  'x-forwarded-preferred-username', 'mallory',
  'X-WEBAUTH-USER', 'mallory',
  'x-webauth-email', 'mallory@evil.example',
  'X_WEBAUTH_USER', 'mallory',
  'X-Portcullis-Assertion', 'forged.jwt.value',
];
const IDENTITY_NAMES = ['x-forwarded-user', 'x-forwarded-email', 'x-forwarded-groups', 'x-forwarded-preferred-username', 'x-webauth-user', 'x-webauth-email', 'x-portcullis-assertion'];

const canonical = (name: string) => name.toLowerCase().replace(/_/g, '-');

/** No forged value and no underscore variant of an identity header reached the upstream. */
function assertNothingForged(seen: RecordedRequest, what: string): void {
  for (let i = 0; i < seen.rawHeaders.length; i += 2) {
    const name = seen.rawHeaders[i]!;
    const value = seen.rawHeaders[i + 1]!;
    assert.doesNotMatch(value, /mallory|forged\.jwt/, `${what}: forged value arrived in ${name}: ${value}`);
    if (IDENTITY_NAMES.includes(canonical(name))) {
      assert.ok(!name.includes('_'), `${what}: identity header with an underscore arrived: ${name}`);
    }
  }
  // Each identity header at most once (no forged duplicate beside the real one).
  for (const n of IDENTITY_NAMES) {
    const count = seen.rawHeaders.filter((h, i) => i % 2 === 0 && canonical(h) === n).length;
    assert.ok(count <= 1, `${what}: ${n} arrived ${count} times`);
  }
}

function assertNoIdentity(seen: RecordedRequest, what: string): void {
  assertNothingForged(seen, what);
  for (let i = 0; i < seen.rawHeaders.length; i += 2) {
    assert.ok(!IDENTITY_NAMES.includes(canonical(seen.rawHeaders[i]!)), `${what}: ${seen.rawHeaders[i]} must be absent without a session`);
  }
}

function assertAlice(seen: RecordedRequest, what: string, routeHeaders = true): void {
  assertNothingForged(seen, what);
  assert.equal(seen.headers['x-forwarded-user'], 'alice', what);
  assert.equal(seen.headers['x-forwarded-email'], 'alice@example.com', what);
  assert.equal(seen.headers['x-forwarded-preferred-username'], 'alice', what);
  assert.equal(seen.headers['x-forwarded-groups'], 'admin,dev', what);
  if (routeHeaders) {
    assert.equal(seen.headers['x-webauth-user'], 'alice', what);
    assert.equal(seen.headers['x-webauth-email'], 'alice@example.com', what);
  }
  assert.equal(seen.headers['x-portcullis-assertion'], undefined, what);
}

async function signedIn(t: Parameters<typeof startStack>[0]): Promise<{ s: Stack; cookie: string }> {
  const s = await startStack(t, { routes: ROUTES });
  const r = await loginViaHttp(`${s.url}/`, ALICE);
  assert.equal(r.status, 200, 'login works');
  // Only Portcullis's session cookie: the jar also holds the dev IdP's (same host, other port).
  const value = r.jar.get('portcullis', s.url);
  assert.ok(value, 'session cookie issued');
  return { s, cookie: `portcullis=${value}` };
}

/** Sends a request and returns the status and the one request the upstream saw for it (or undefined). */
async function send(s: Stack, opts: { path: string; method?: string; headers: string[]; body?: string }): Promise<{ status: number; seen: RecordedRequest | undefined }> {
  const before = s.upstream.requests.length;
  const r = await rawRequest(s.url, opts);
  const after = s.upstream.requests.slice(before);
  assert.ok(after.length <= 1, 'at most one upstream request per client request');
  return { status: r.status, seen: after[0] };
}

test('an authenticated request carries the real identity, whatever identity headers the client sent', async (t) => {
  const { s, cookie } = await signedIn(t);
  for (const method of ['GET', 'POST', 'OPTIONS', 'DELETE']) {
    const { status, seen } = await send(s, {
      path: '/dashboard?x=1', method,
      headers: [...SPOOFED, 'cookie', cookie, 'accept', 'application/json', ...(method === 'POST' ? ['content-type', 'text/plain'] : [])],
      body: method === 'POST' ? 'hello' : undefined,
    });
    assert.equal(status, 200, method);
    assert.ok(seen, `${method} reached the upstream`);
    assert.equal(seen.method, method);
    assert.equal(seen.url, '/dashboard?x=1');
    assertAlice(seen, `app ${method}`);
  }
});

test('a public route with a session gets the real default identity and no forged route header', async (t) => {
  const { s, cookie } = await signedIn(t);
  const { status, seen } = await send(s, { path: '/public/x.css', headers: [...SPOOFED, 'cookie', cookie] });
  assert.equal(status, 200);
  assert.ok(seen);
  assertAlice(seen, 'public with session', false);
  // X-WEBAUTH-* is configured on another route only: here it must simply be gone.
  assert.equal(seen.headers['x-webauth-user'], undefined);
  assert.equal(seen.headers['x-webauth-email'], undefined);
});

test('a public route without a session: every identity header arrives absent, on GET, POST and OPTIONS', async (t) => {
  const s = await startStack(t, { routes: ROUTES });
  for (const method of ['GET', 'HEAD', 'POST', 'OPTIONS', 'PUT']) {
    const { status, seen } = await send(s, {
      path: '/public/form', method,
      headers: [...SPOOFED, ...(method === 'POST' || method === 'PUT' ? ['content-type', 'application/x-www-form-urlencoded'] : [])],
      body: method === 'POST' || method === 'PUT' ? 'a=1' : undefined,
    });
    assert.equal(status, 200, method);
    assert.ok(seen, `${method} reached the upstream`);
    assert.equal(seen.method, method);
    assertNoIdentity(seen, `public ${method}`);
  }
  // A garbage session cookie on a public route is still "no session".
  const { status, seen } = await send(s, { path: '/public/x', headers: [...SPOOFED, 'cookie', 'portcullis=v1.AAAA'] });
  assert.equal(status, 200);
  assert.ok(seen);
  assertNoIdentity(seen, 'public with a bad cookie');
});

test('spoofed headers on a required route without a session never reach the upstream', async (t) => {
  const s = await startStack(t, { routes: ROUTES });
  for (const method of ['GET', 'POST', 'OPTIONS']) {
    const { status, seen } = await send(s, { path: '/dashboard', method, headers: [...SPOOFED, 'accept', 'application/json'] });
    assert.equal(status, 401, method);
    assert.equal(seen, undefined, `${method}: nothing reached the upstream`);
  }
});

test('Connection: x-forwarded-user does not remove the injected identity headers', async (t) => {
  const { s, cookie } = await signedIn(t);
  const port = new URL(s.url).port;
  for (const connection of ['x-forwarded-user', 'X-Forwarded-User, X-Forwarded-Email, x-forwarded-groups, x-webauth-user, close']) {
    const before = s.upstream.requests.length;
    const raw = await rawSocket(Number(port), [
      'GET /dashboard HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Accept: application/json',
      `Cookie: ${cookie}`,
      `Connection: ${connection}`,
      'X-Forwarded-User: mallory',
      '', '',
    ].join('\r\n'));
    assert.equal(statusOf(raw), 200, raw.slice(0, 200));
    const seen = s.upstream.requests.slice(before);
    assert.equal(seen.length, 1);
    assertAlice(seen[0]!, `Connection: ${connection}`);
  }
});

test("Portcullis's cookies (session, chunks, transactions) never reach the upstream over HTTP", async (t) => {
  const { s, cookie } = await signedIn(t);
  // A real transaction cookie, as a browser in the middle of another sign-in would hold.
  const start = await request(`${s.url}/oauth2/start?rd=/x`);
  await start.body.dump();
  const txn = [start.headers['set-cookie']].flat().map(String).find((c) => c.startsWith('portcullis_txn_'));
  assert.ok(txn, 'a transaction cookie was issued');
  const txnPair = txn.split(';')[0]!;
  const header = ['theme=dark', cookie, txnPair, 'portcullis_1=chunk', '__Host-portcullis=x', 'Portcullis_txn_zzz=1', 'lang=en'].join('; ');
  const { status, seen } = await send(s, { path: '/page', headers: ['cookie', header, 'accept', 'application/json'] });
  assert.equal(status, 200);
  assert.ok(seen);
  assert.equal(seen.headers.cookie, 'theme=dark; lang=en');
  assertAlice(seen, 'with other cookies');

  // Only Portcullis cookies: no Cookie header at all upstream.
  const only = await send(s, { path: '/page', headers: ['cookie', cookie, 'accept', 'application/json'] });
  assert.equal(only.status, 200);
  assert.ok(only.seen);
  assert.equal(only.seen.headers.cookie, undefined);

  // Public route, anonymous, with leftover Portcullis cookies.
  const pub = await send(s, { path: '/public/a', headers: ['cookie', `${txnPair}; portcullis=garbage; keep=1`] });
  assert.equal(pub.status, 200);
  assert.ok(pub.seen);
  assert.equal(pub.seen.headers.cookie, 'keep=1');
  assertNoIdentity(pub.seen, 'public with leftover cookies');
});

/** Opens a WebSocket and returns the upgrade request as the upstream recorded it (its first message). */
function openWs(url: string, headers: Record<string, string>): Promise<{ first: { url: string; headers: Record<string, string | undefined> } } | { status: number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('websocket timed out')); }, 5000);
    ws.once('message', (data) => {
      clearTimeout(timer);
      ws.close();
      resolve({ first: JSON.parse(String(data)) });
    });
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
      ws.terminate();
    });
    ws.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

test("WebSocket upgrades: real identity, no forged headers, no Portcullis cookies", async (t) => {
  const { s, cookie } = await signedIn(t);
  const wsUrl = `${s.url.replace('http:', 'ws:')}/socket?room=1`;
  const spoof: Record<string, string> = {
    'X-Forwarded-User': 'mallory', 'X-FORWARDED-GROUPS': 'admin', 'X_Forwarded_User': 'mallory', 'X-WEBAUTH-USER': 'mallory',
  };
  const r = await openWs(wsUrl, { ...spoof, cookie: `theme=dark; ${cookie}; portcullis_txn_abc=1` });
  assert.ok('first' in r, `upgrade accepted (got ${JSON.stringify(r)})`);
  const h = r.first.headers;
  assert.equal(r.first.url, '/socket?room=1');
  assert.equal(h.cookie, 'theme=dark');
  assert.equal(h['x-forwarded-user'], 'alice');
  assert.equal(h['x-forwarded-groups'], 'admin,dev');
  assert.equal(h['x-webauth-user'], 'alice');
  assert.equal(h['x_forwarded_user'], undefined);
  assert.doesNotMatch(JSON.stringify(h), /mallory/);

  // Without a session the upgrade is refused and never reaches the upstream.
  const before = s.upstream.requests.length;
  const anon = await openWs(wsUrl, spoof);
  assert.deepEqual(anon, { status: 401 });
  assert.equal(s.upstream.requests.length, before);
});
