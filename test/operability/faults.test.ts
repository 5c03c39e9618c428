// Faults survived, on loopback and bounded in time: the IdP down at boot and back later, its signing
// keys rotated between two logins, its clock 45 s off, its token endpoint failing during a callback
// (500, HTML, hanging past oidc.timeout), and an upstream resetting mid-body. (Refused, hanging and
// resetting upstreams before the response: test/security/upstream-failures.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { validateConfigObject, formatIssues } from '../../src/config/index.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { startDevIdp, type DevClient, type DevIdp } from '../../dev/devidp/provider.js';
import { freePort, startStack, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { startRogueIdp } from '../helpers/rogue-idp.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';
import type { CleanupScope } from '../helpers/idp.js';
import { waitFor } from './support.js';

const ALICE = { user: 'alice', password: 'alice-password' };
const NAVIGATION = { accept: 'text/html,application/xhtml+xml', 'sec-fetch-mode': 'navigate' };

/** The proxy in this process, against an IdP that may not be up yet (no waiting for readiness). */
async function proxy(t: CleanupScope, o: { port: number; issuer: string; clientId?: string; clientSecret?: string; upstream: string; oidc?: Record<string, unknown> }): Promise<{ server: RunningServer; url: string; logs: string[] }> {
  const url = `http://127.0.0.1:${o.port}`;
  const r = validateConfigObject({
    listen: { host: '127.0.0.1', port: o.port },
    publicUrl: url,
    metrics: { host: '127.0.0.1', port: 0 },
    logLevel: 'debug',
    oidc: { issuer: o.issuer, clientId: o.clientId ?? 'portcullis', clientSecret: o.clientSecret ?? 'test-secret', scopes: ['openid', 'email', 'profile', 'groups'], timeout: '2s', ...o.oidc },
    session: { secrets: [TEST_SESSION_SECRET] },
    routes: [
      { name: 'public', match: { path: '/public' }, upstream: o.upstream, auth: 'public' },
      { name: 'app', match: { path: '/' }, upstream: o.upstream },
    ],
  }, {});
  if (!r.ok) throw new Error(formatIssues(r.issues));
  const logs: string[] = [];
  const logStream = new Writable({ write(chunk, _enc, cb) { logs.push(...String(chunk).split('\n').filter(Boolean)); cb(); } });
  const server = await startServer(r.config, { logStream });
  t.after(() => server.close());
  return { server, url, logs };
}

function devClient(proxyUrl: string): DevClient {
  return { client_id: 'portcullis', client_secret: 'test-secret', redirect_uris: [`${proxyUrl}/oauth2/callback`] };
}

async function devIdpOn(t: CleanupScope, port: number, proxyUrl: string): Promise<DevIdp> {
  const idp = await startDevIdp({ port, clients: [devClient(proxyUrl)] });
  t.after(() => idp.close());
  return idp;
}

async function status(url: string, headers: Record<string, string> = { accept: 'application/json' }) {
  const r = await request(url, { headers });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

test('IdP not listening at boot: the proxy starts, /readyz 503, sign-in gets a 503 page with Retry-After; once the IdP is up, ready and sign-in works without a restart', async (t) => {
  const idpPort = await freePort();
  const upstream = await startTestUpstream(t);
  const p = await proxy(t, { port: await freePort(), issuer: `http://127.0.0.1:${idpPort}`, upstream: upstream.url });

  const ready = await status(`${p.url}/readyz`);
  assert.equal(ready.status, 503);
  assert.match(ready.body, /ECONNREFUSED|discovering/);
  const page = await status(`${p.url}/somewhere`, NAVIGATION);
  assert.equal(page.status, 503);
  assert.ok(Number(page.headers['retry-after']) > 0, 'Retry-After');
  assert.match(page.body, /identity provider cannot be reached/);
  assert.equal((await status(`${p.url}/oauth2/start`, NAVIGATION)).status, 503);
  assert.equal((await status(`${p.url}/somewhere`)).status, 401, 'API clients still get a plain 401');
  assert.equal((await status(`${p.url}/public/x`)).status, 200, 'public routes keep working');
  assert.equal((await status(`${p.url}/healthz`)).status, 200, 'alive');

  // Let the backoff grow a little (a second failed attempt: the next wait is 1–2 s), then bring the IdP up on that port.
  await waitFor(() => p.logs.some((l) => l.includes('discovery failed') && (JSON.parse(l) as { attempt?: number }).attempt! >= 2), 10_000, 'a second failed discovery attempt');
  await devIdpOn(t, idpPort, p.url);
  const t0 = Date.now();
  await waitFor(async () => (await status(`${p.url}/readyz`)).status === 200, 5_000, 'ready after the IdP came up');
  assert.ok(Date.now() - t0 < 3_000, `ready ${Date.now() - t0} ms after the IdP came up (probes retry discovery at once)`);
  const login = await loginViaHttp(`${p.url}/x`, ALICE);
  assert.equal(login.status, 200);
  assert.match(login.body, /x-forwarded-user<\/th><td>alice</, 'the upstream sees alice');
});

test('JWKS rotated between two logins: the second login verifies with the new key; sessions survive the IdP being down meanwhile', async (t) => {
  const idpPort = await freePort();
  const port = await freePort();
  const upstream = await startTestUpstream(t);
  const url = `http://127.0.0.1:${port}`;
  const first = await devIdpOn(t, idpPort, url);
  const p = await proxy(t, { port, issuer: first.issuer, upstream: upstream.url });
  await p.server.runtime.providers.waitReady(5_000);
  const one = await loginViaHttp(`${url}/x`, ALICE);
  assert.equal(one.status, 200, 'first login');

  await first.close();
  assert.equal((await status(`${url}/y`, { accept: 'application/json', cookie: one.jar.header(url) })).status, 200, 'an existing session works while the IdP is down');

  // Same issuer and port, fresh signing keys (new kids).
  await devIdpOn(t, idpPort, url);
  const two = await loginViaHttp(`${url}/z`, { ...ALICE, jar: new CookieJar() });
  assert.equal(two.status, 200, `second login after the rotation: ${two.body.slice(0, 400)}`);
  assert.ok(two.jar.get('portcullis', url), 'a session was issued');
  assert.ok(p.logs.some((l) => l.includes('signing key')), 'the key refresh is logged');
});

test('IdP clock 45 s ahead: refused with the default 30 s tolerance, accepted with clockTolerance: 60s; 45 s behind: accepted', async (t) => {
  const upstream = await startTestUpstream(t);
  const now = Math.floor(Date.now() / 1000);
  const attempt = async (skew: number, oidc: Record<string, unknown> = {}) => {
    const rogue = await startRogueIdp(t, { claims: { iat: now + skew, exp: now + skew + 120 } });
    const p = await proxy(t, { port: await freePort(), issuer: rogue.issuer, clientId: rogue.clientId, clientSecret: rogue.clientSecret, upstream: upstream.url, oidc });
    await p.server.runtime.providers.waitReady(5_000);
    const jar = new CookieJar();
    const r = await followRedirects(`${p.url}/p`, jar);
    return { r, session: jar.get('portcullis', p.url) };
  };
  const ahead = await attempt(45);
  assert.equal(ahead.r.status, 401, 'iat 45 s in the future is beyond a 30 s tolerance');
  assert.match(ahead.r.body, /Sign in again/);
  assert.equal(ahead.session, undefined);
  const tolerated = await attempt(45, { clockTolerance: '60s' });
  assert.equal(tolerated.r.status, 200);
  assert.ok(tolerated.session);
  const behind = await attempt(-45);
  assert.equal(behind.r.status, 200, 'iat 45 s ago, exp 75 s from now');
  assert.ok(behind.session);
});

type TokenFault = 'json-500' | 'text-500' | 'html' | 'hang';

/** An IdP whose authorization endpoint answers at once and whose token endpoint fails as told. */
async function startFaultyIdp(t: CleanupScope): Promise<{ issuer: string; fault: { mode: TokenFault }; tokenCalls: () => number }> {
  const fault = { mode: 'json-500' as TokenFault };
  let calls = 0;
  const sockets = new Set<Socket>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', issuer);
    const json = (code: number, body: unknown) => res.writeHead(code, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (u.pathname === '/.well-known/openid-configuration') {
      return json(200, {
        issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
      });
    }
    if (u.pathname === '/jwks') return json(200, { keys: [] });
    if (u.pathname === '/authorize') {
      const back = new URL(u.searchParams.get('redirect_uri')!);
      back.searchParams.set('code', 'a-code');
      back.searchParams.set('state', u.searchParams.get('state')!);
      back.searchParams.set('iss', issuer);
      return res.writeHead(302, { location: back.href }).end();
    }
    if (u.pathname === '/token') {
      calls++;
      req.resume();
      switch (fault.mode) {
        case 'json-500': return json(500, { error: 'server_error', error_description: 'database on fire' });
        case 'text-500': return res.writeHead(500, { 'content-type': 'text/plain' }).end('Internal Server Error');
        case 'html': return res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>Maintenance</title><p>Back soon</p>');
        case 'hang': return; // never answers
      }
    }
    json(404, { error: 'not_found' });
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  t.after(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }));
  return { issuer, fault, tokenCalls: () => calls };
}

test('token endpoint failing during the callback (500, HTML, hanging past oidc.timeout): a clear 502/504 page with "Sign in again", no session, the proxy stays up', async (t) => {
  const idp = await startFaultyIdp(t);
  const upstream = await startTestUpstream(t);
  const p = await proxy(t, { port: await freePort(), issuer: idp.issuer, upstream: upstream.url, oidc: { timeout: '1s' } });
  await p.server.runtime.providers.waitReady(5_000);
  const cases: Array<[TokenFault, number, string]> = [
    ['json-500', 502, 'ERR_IDP_BAD_RESPONSE'],
    ['text-500', 502, 'ERR_IDP_BAD_RESPONSE'],
    ['html', 502, 'ERR_IDP_BAD_RESPONSE'],
    ['hang', 504, 'ERR_IDP_TIMEOUT'],
  ];
  for (const [mode, expected, code] of cases) {
    idp.fault.mode = mode;
    const calls = idp.tokenCalls();
    const jar = new CookieJar();
    const t0 = Date.now();
    const r = await followRedirects(`${p.url}/page?case=${mode}`, jar);
    const took = Date.now() - t0;
    assert.equal(idp.tokenCalls(), calls + 1, `${mode}: the token endpoint was called once (no retries)`);
    assert.equal(r.status, expected, `${mode}: ${p.logs.slice(-3).join("\n")}`);
    assert.match(r.body, /Sign in again/, mode);
    assert.match(r.body, new RegExp(code), mode);
    assert.ok(!r.body.includes('database on fire') && !r.body.includes('Maintenance'), `${mode}: the IdP's own words stay in the log`);
    assert.equal(jar.get('portcullis', p.url), undefined, `${mode}: no session cookie`);
    assert.deepEqual(jar.names(p.url).filter((n) => n.startsWith('portcullis')), [], `${mode}: the transaction cookie is cleared too`);
    assert.ok(took < (mode === 'hang' ? 3_000 : 1_500), `${mode}: answered in ${took} ms`);
  }
  assert.equal((await status(`${p.url}/healthz`)).status, 200, 'still up');
  assert.equal((await status(`${p.url}/readyz`)).status, 200, 'still ready: a failing token endpoint is not an outage of discovery');
  const metrics = await (await request(`${p.server.metricsUrl}/metrics`)).body.text();
  assert.match(metrics, /portcullis_logins_total\{result="ERR_IDP_BAD_RESPONSE",provider="default"\} 3/);
  assert.match(metrics, /portcullis_logins_total\{result="ERR_IDP_TIMEOUT",provider="default"\} 1/);
});

test('an upstream resetting mid-body: the client connection is aborted (never a clean truncated response) and the proxy stays healthy', async (t) => {
  const sockets = new Set<Socket>();
  const up = createServer((req, res) => {
    if (req.url === '/partial') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part of the body\n');
      setTimeout(() => req.socket.destroy(), 100);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('fine');
  });
  up.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); up.close(() => r()); }));
  const upstream = `http://127.0.0.1:${(up.address() as { port: number }).port}`;
  const s = await startStack(t, { routes: [{ name: 'flaky', match: { path: '/' }, upstream, auth: 'public' }] });

  const res = await request(`${s.url}/partial`);
  assert.equal(res.statusCode, 200, 'the headers had already gone out');
  await assert.rejects(res.body.text(), 'the body ends in an error, not as if it were complete');
  for (let i = 0; i < 3; i++) {
    const ok = await request(`${s.url}/ok`);
    assert.equal(await ok.body.text(), 'fine');
  }
  assert.equal((await status(`${s.url}/healthz`)).status, 200);
});
