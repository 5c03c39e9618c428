// Per-upstream tokens (RFC 8693) against the development IdP's token-exchange grant (oidc-provider
// 8.8.1 ships none; dev/devidp/provider.ts adds a small conformant one): the upstream receives a
// token the IdP issued for the route's audience instead of alice's own, in the header the route
// names; it is reused for the session; the IdP refusing is a 502 page that says so; the same on the
// WebSocket and forward-auth doorways; and a config without a header to put it in is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { validateConfigObject, formatIssues } from '../../src/config/index.js';

const ALICE = { user: 'alice', password: 'alice-password' };

const ROUTES = [
  { name: 'orders', match: { path: '/orders' }, upstream: '{upstream}', passAuthorization: true, tokenExchange: { audience: 'https://orders.example', scope: 'openid email' }, websocket: true },
  { name: 'refused', match: { path: '/refused' }, upstream: '{upstream}', passAccessToken: true, tokenExchange: { audience: 'https://refused.example' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', passAccessToken: true },
];

async function signedIn(s: Stack) {
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const r = await request(`${s.url}${path}`, { headers: { accept: 'application/json', cookie: jar.header(s.url), ...headers } });
    const body = await r.body.text();
    return { status: r.statusCode, body, seen: s.upstream.requests.at(-1)! };
  };
  return { jar, get };
}

async function exchanges(s: Stack, result: string): Promise<number> {
  const text = await s.server.runtime.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`portcullis_token_exchange_total{result="${result}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

test('the upstream gets a token for its audience, not the user\'s; reused for the session', async (t) => {
  const s = await startStack(t, { routes: ROUTES });
  const { get } = await signedIn(s);
  const own = String((await get('/mine')).seen.headers['x-forwarded-access-token']);
  assert.ok(own.length > 20, 'alice\'s own token (the app route passes it)');

  const first = await get('/orders/1');
  assert.equal(first.status, 200, first.body);
  const auth = String(first.seen.headers.authorization);
  assert.match(auth, /^Bearer \S+$/);
  const exchanged = auth.slice('Bearer '.length);
  assert.notEqual(exchanged, own, 'not the user\'s own token');
  assert.equal(first.seen.headers['x-forwarded-access-token'], undefined, 'only where the route says');
  assert.equal(first.seen.headers['x-forwarded-user'], 'alice', 'identity headers as usual');
  const at = await s.idp.provider.AccessToken.find(exchanged);
  assert.ok(at, 'a token the IdP issued');
  assert.equal(at.aud, 'https://orders.example', 'for the route\'s audience');
  assert.equal(at.accountId, 'alice');
  assert.equal(at.gty, 'token-exchange');

  const second = await get('/orders/2');
  assert.equal(String(second.seen.headers.authorization), auth, 'reused');
  assert.equal(await exchanges(s, 'exchanged'), 1);
  assert.equal(await exchanges(s, 'cached'), 1);
});

test('the IdP refusing the exchange: a 502 that says so, nothing forwarded', async (t) => {
  const s = await startStack(t, { routes: ROUTES });
  const { get } = await signedIn(s);
  const before = s.upstream.requests.length;
  const r = await get('/refused/x');
  assert.equal(r.status, 502);
  const body = JSON.parse(r.body) as { error: string; message: string };
  assert.equal(body.error, 'ERR_TOKEN_EXCHANGE_REFUSED');
  assert.match(body.message, /invalid_target/);
  assert.equal(s.upstream.requests.length, before, 'the upstream saw nothing');
  const page = await get('/refused/x', { accept: 'text/html' });
  assert.equal(page.status, 502);
  assert.match(page.body, /refused to issue a token/);
  assert.equal(await exchanges(s, 'refused'), 2, 'a refusal is not cached');
});

test('WebSocket upgrades and forward-auth carry the exchanged token too', async (t) => {
  // Forward-auth reads the original request from a trusted fronting proxy.
  const s = await startStack(t, { routes: ROUTES, edit: (raw) => { raw.trustProxy = ['127.0.0.1', '::1']; } });
  const { jar } = await signedIn(s);
  const status = await new Promise<number>((resolve, reject) => {
    const up = httpRequest(`${s.url}/orders/socket`, { headers: { cookie: jar.header(s.url), connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    up.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 0); });
    up.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    up.on('error', reject);
    up.end();
  });
  assert.equal(status, 101);
  const wsAuth = String(s.upstream.requests.at(-1)!.headers.authorization);
  const at = await s.idp.provider.AccessToken.find(wsAuth.slice('Bearer '.length));
  assert.equal(at?.aud, 'https://orders.example');

  const fa = await request(`${s.url}/oauth2/auth`, { headers: { cookie: jar.header(s.url), 'x-forwarded-uri': '/orders/x', 'x-forwarded-method': 'GET', accept: 'application/json' } });
  await fa.body.dump();
  assert.equal(fa.statusCode, 202);
  assert.equal(fa.headers.authorization, wsAuth, 'forward-auth hands the fronting proxy the same exchanged token');
});

test('tokenExchange needs a header to put the token in', () => {
  const r = validateConfigObject({
    publicUrl: 'https://apps.example', oidc: { issuer: 'https://idp.example', clientId: 'c', clientSecret: 's' },
    session: { secrets: ['x'.repeat(40)] },
    routes: [{ name: 'r', match: { path: '/' }, upstream: 'http://127.0.0.1:1', tokenExchange: { audience: 'https://api' } }],
  }, {});
  assert.equal(r.ok, false);
  assert.match(formatIssues(r.ok ? [] : r.issues), /routes\[0\]\.tokenExchange: .*passAuthorization/);
});
