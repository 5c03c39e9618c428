// A session decided synchronously (verified and cached) and one decided asynchronously (the cookie
// opened on every request: `session.cacheMaxEntries: 0`) go through the same door, so the same
// requests reach the upstream identically.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from 'undici';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';

// What differs between two stacks on two ports (or by request), not by doorway.
const VOLATILE = new Set(['x-request-id', 'host', 'x-forwarded-host', 'x-forwarded-port', 'forwarded', 'connection']);

async function send(url: string, path: string, method: string, headers: Record<string, string>, body?: string) {
  const c = new Client(url);
  try {
    const r = await c.request({ path, method: method as 'GET', headers, body });
    const text = await r.body.text();
    return { status: r.statusCode, headers: r.headers, text };
  } finally {
    await c.close();
  }
}

test('cached and uncached sessions send the upstream the same request', async (t) => {
  const fast = await startStack(t);
  const full = await startStack(t, { existingIdp: fast.idp, sessionCache: false });
  const cases: Array<{ path: string; method: string; headers: Record<string, string>; body?: string; signedIn: boolean }> = [
    { path: '/app/x?q=%zz&a=../b', method: 'GET', headers: { accept: 'application/json', 'x-forwarded-user': 'admin', X_Forwarded_Email: 'evil@x', connection: 'x-forwarded-groups', 'x-original-url': '/admin' }, signedIn: true },
    { path: '/public/%61sset.css', method: 'GET', headers: { 'x-forwarded-groups': 'admin', cookie: 'other=1; portcullis_txn_abc=zzz' }, signedIn: false },
    { path: '/app/form', method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-webauth-user': 'root' }, body: 'a=1&b=2', signedIn: true },
    { path: '//app//y/./z', method: 'DELETE', headers: {}, signedIn: true },
  ];
  const alice = { user: 'alice', password: 'alice-password' };
  const jarFast = (await loginViaHttp(`${fast.url}/`, alice)).jar;
  const jarFull = (await loginViaHttp(`${full.url}/`, alice)).jar;
  // Warm both session caches (the first request of a session always takes the full path).
  await send(fast.url, '/warm', 'GET', { cookie: jarFast.header(fast.url) });
  await send(full.url, '/warm', 'GET', { cookie: jarFull.header(full.url) });
  const served = async () => (await fast.server.runtime.metrics.cacheHits.get()).values[0]?.value ?? 0;
  const before = await served();
  for (const c of cases) {
    const hFast = { ...c.headers, ...(c.signedIn ? { cookie: [c.headers.cookie, jarFast.header(fast.url)].filter(Boolean).join('; ') } : {}) };
    const hFull = { ...c.headers, ...(c.signedIn ? { cookie: [c.headers.cookie, jarFull.header(full.url)].filter(Boolean).join('; ') } : {}) };
    const a = await send(fast.url, c.path, c.method, hFast, c.body);
    const b = await send(full.url, c.path, c.method, hFull, c.body);
    assert.equal(a.status, b.status, c.path);
    const ua = fast.upstream.requests.at(-1)!;
    const ub = full.upstream.requests.at(-1)!;
    assert.equal(ua.method, ub.method, c.path);
    assert.equal(ua.url, ub.url, c.path);
    // The two sign-ins left different IdP cookies (op_*) in the jars; everything else must match.
    const norm = (h: Record<string, unknown>) => Object.fromEntries(Object.entries(h).filter(([k]) => !VOLATILE.has(k))
      .map(([k, v]) => [k, k === 'cookie' ? String(v).split('; ').filter((p) => !p.startsWith('op_')).join('; ') : v]).sort());
    assert.deepEqual(norm(ua.headers), norm(ub.headers), c.path);
  }
  assert.equal((await served()) - before, cases.filter((c) => c.signedIn).length, 'every signed-in case was decided from the session cache on the first stack');
});

test('behind a trusted proxy, cached or not, Portcullis believes only the last X-Forwarded-Host / -Proto entry (the one that proxy wrote)', async (t) => {
  const routes = [
    { name: 'internal', match: { host: '127.0.0.1', path: '/' }, upstream: '{upstream}', auth: 'public' },
    { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
  ];
  const trust = (raw: Record<string, unknown>) => { raw.trustProxy = true; };
  const fast = await startStack(t, { routes, edit: trust });
  const full = await startStack(t, { routes, edit: trust, existingIdp: fast.idp, sessionCache: false });
  for (const s of [fast, full]) {
    const label = s === fast ? 'session cache on' : 'session cache off';
    // A client-written entry first, the proxy's own last: the client must not pick the host-routed public route.
    const spoofed = await send(s.url, '/x', 'GET', { accept: 'application/json', 'x-forwarded-host': '127.0.0.1, app.example' });
    assert.equal(spoofed.status, 401, `${label}: routed by the proxy's entry, not the client's`);
    const real = await send(s.url, '/x', 'GET', { accept: 'application/json', 'x-forwarded-host': 'app.example, 127.0.0.1', 'x-forwarded-proto': 'http, https', 'x-forwarded-for': '6.6.6.6' });
    assert.equal(real.status, 200, label);
    const seen = s.upstream.requests.at(-1)!;
    assert.equal(seen.headers['x-forwarded-host'], '127.0.0.1', label);
    assert.equal(seen.headers['x-forwarded-proto'], 'https', label);
    assert.equal(seen.headers['x-forwarded-for'], '6.6.6.6, 127.0.0.1', label);
  }
});
