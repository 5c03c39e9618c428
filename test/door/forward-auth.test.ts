// Forward-auth (/oauth2/auth) for nginx auth_request and Traefik forwardAuth.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { exchange, toHead } from '../helpers/raw-http.js';

const trusted = (raw: Record<string, unknown>) => { raw.trustProxy = ['127.0.0.1', '::1']; };

async function auth(url: string, headers: Record<string, string>) {
  const r = await request(`${url}/oauth2/auth`, { headers });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body: text };
}

test('forward-auth answers 202 with identity headers, 401 or 403, on the original request', async (t) => {
  const s = await startStack(t, { edit: trusted });
  const alice = (await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' })).jar.header(s.url);
  const bob = (await loginViaHttp(`${s.url}/`, { user: 'bob', password: 'bob-password' })).jar.header(s.url);
  const before = s.upstream.requests.length;

  const ok = await auth(s.url, { cookie: alice, 'x-forwarded-method': 'GET', 'x-forwarded-proto': 'https', 'x-forwarded-host': '127.0.0.1', 'x-forwarded-uri': '/admin/x' });
  assert.equal(ok.status, 202);
  assert.equal(ok.headers['x-forwarded-user'], 'alice');
  assert.equal(ok.headers['x-forwarded-groups'], 'admin,dev');

  const denied = await auth(s.url, { cookie: bob, 'x-forwarded-uri': '/admin/x', 'x-forwarded-host': '127.0.0.1' });
  assert.equal(denied.status, 403);
  assert.equal(denied.headers['x-forwarded-user'], undefined);

  const anon = await auth(s.url, { 'x-forwarded-uri': '/app', 'x-forwarded-host': '127.0.0.1', accept: 'text/html' });
  assert.equal(anon.status, 401, 'never a redirect: the fronting proxy decides');
  assert.match(JSON.parse(anon.body).signInUrl, /\/oauth2\/start\?rd=/);

  // nginx style: X-Original-URL; path tricks are normalised before matching.
  const nginx = await auth(s.url, { cookie: bob, 'x-original-url': 'http://127.0.0.1/public/../admin' });
  assert.equal(nginx.status, 403);
  // X-Original-URL is read by the one path rule, never by a URL parser: new URL() resolves
  // `/x/..;/%2e./admin` to `/x/admin` (the catch-all), which Tomcat behind nginx serves as `/admin`.
  for (const tricky of ['http://127.0.0.1/x/..;/%2e./admin/x', 'http://127.0.0.1/public/..%5c/../admin', 'http://127.0.0.1/public/x/%2e./..;/admin']) {
    const r = await auth(s.url, { cookie: bob, 'x-original-url': tricky, 'x-forwarded-method': 'GET' });
    assert.ok(r.status === 400 || r.status === 403, `${tricky}: ${r.status} (never 202 for bob)`);
  }
  const relative = await auth(s.url, { cookie: bob, 'x-original-url': '/public/x', 'x-forwarded-method': 'GET' });
  assert.equal(relative.status, 400, 'X-Original-URL must be absolute');
  const bad = await auth(s.url, { cookie: alice, 'x-forwarded-uri': '/a%2fb' });
  assert.equal(bad.status, 400);
  const none = await auth(s.url, { cookie: alice });
  assert.equal(none.status, 400);

  // Spoofed identity headers sent to forward-auth are not echoed back as identity.
  const spoof = await auth(s.url, { 'x-forwarded-uri': '/public/x', 'x-forwarded-user': 'admin' });
  assert.equal(spoof.status, 202);
  assert.equal(spoof.headers['x-forwarded-user'], undefined);
  assert.equal(s.upstream.requests.length, before, 'forward-auth never proxies');
});

test('forward-auth refuses untrusted peers (X-Forwarded-Uri would be a lie detector bypass)', async (t) => {
  const s = await startStack(t);
  const r = await auth(s.url, { 'x-forwarded-uri': '/public/x' });
  assert.equal(r.status, 400);
  assert.match(r.body, /trusted/);
});

test('an untrusted client cannot steer routing with X-Forwarded-Host or X-Forwarded-Uri', async (t) => {
  const s = await startStack(t, {
    routes: [
      { name: 'admin', match: { path: '/admin' }, upstream: '{upstream}', allow: { claim: 'groups', contains: 'admin' } },
      { name: 'public', match: { path: '/' }, upstream: '{upstream}', auth: 'public' },
    ],
  });
  const r = await request(`${s.url}/admin`, { headers: { 'x-forwarded-uri': '/public', 'x-original-url': 'http://x/public', accept: 'application/json' } });
  await r.body.dump();
  assert.equal(r.statusCode, 401);
  const p = await request(`${s.url}/x`, { headers: { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', 'x-forwarded-for': '6.6.6.6' } });
  await p.body.dump();
  const seen = s.upstream.requests.at(-1)!;
  assert.equal(seen.headers['x-forwarded-host'], new URL(s.url).host);
  const o = await request(`${s.url}/x`, { headers: { 'x-original-url': '/admin', 'x-rewrite-url': '/admin', 'x-http-method-override': 'DELETE', 'x-forwarded-prefix': '/admin' } });
  await o.body.dump();
  const seen2 = s.upstream.requests.at(-1)!;
  for (const h of ['x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-forwarded-prefix']) {
    assert.equal(seen2.headers[h], undefined, `${h} from an untrusted client is not passed to the upstream`);
  }
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'a client-sent X-Forwarded-For is replaced, not appended to');
});

test('forward-auth judges X-Forwarded-Method as the plain doorway judges that request line: case-sensitive, unknown methods refused', async (t) => {
  const s = await startStack(t, {
    routes: [
      { name: 'public', match: { path: '/public', methods: ['GET'] }, upstream: '{upstream}', auth: 'public' },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
    edit: trusted,
  });
  const port = Number(new URL(s.url).port);
  const host = `127.0.0.1:${port}`;
  // `get` read as GET would open the GET-only public route to any method spelling an app upper-cases.
  for (const [method, plainStatus, faStatus] of [['GET', 200, 202], ['get', 400, 400], ['Get', 400, 400], ['FOO', 400, 400], ['PROPFIND', 401, 401], ['DELETE', 401, 401]] as const) {
    const plain = await exchange(port, toHead(`${method} /public/x HTTP/1.1`, [['Host', host], ['Accept', 'application/json']]), undefined, false);
    assert.equal(plain.status, plainStatus, `plain ${method}`);
    const r = await auth(s.url, { 'x-forwarded-method': method, 'x-forwarded-uri': '/public/x', 'x-forwarded-host': host, accept: 'application/json' });
    assert.equal(r.status, faStatus, `forward-auth, X-Forwarded-Method: ${method}: ${r.body}`);
  }
});
