// Bearer routes that ask the IdP (RFC 7662) — end to end against oidc-provider's introspection and
// revocation endpoints: alice's opaque access token (what the dev IdP issues for a sign-in) works on
// an `introspect` route and on a `jwt-then-introspect` one; tokens the IdP does not vouch for are
// refused with invalid_token; a token revoked at the IdP is refused within cacheTtl (the documented
// bound, measured on Portcullis's injected clock); the IdP unreachable refuses new tokens with a 5xx
// while cached ones keep working; a hanging introspection endpoint is a 504, not a hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { request } from 'undici';
import { startStack, freePort, type Stack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { IdentityProvider } from '../../src/signin/idp.js';
import { PortcullisError } from '../../src/errors.js';

const ALICE = { user: 'alice', password: 'alice-password' };

const ROUTES = [
  { name: 'introspected', match: { path: '/api' }, upstream: '{upstream}', bearer: 'introspect' },
  { name: 'mixed', match: { path: '/mixed' }, upstream: '{upstream}', bearer: 'jwt-then-introspect' },
  { name: 'admins', match: { path: '/admin-api' }, upstream: '{upstream}', bearer: 'introspect', allow: { claim: 'sub', equals: 'bob' } },
  { name: 'app', match: { path: '/' }, upstream: '{upstream}', passAccessToken: true },
];

async function aliceToken(s: Stack): Promise<string> {
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const r = await request(`${s.url}/whoami`, { headers: { accept: 'application/json', cookie: jar.header(s.url) } });
  await r.body.dump();
  assert.equal(r.statusCode, 200);
  const token = s.upstream.requests.at(-1)!.headers['x-forwarded-access-token'];
  assert.equal(typeof token, 'string');
  assert.ok(!String(token).includes('.'), 'the dev IdP issues opaque access tokens for a sign-in');
  return String(token);
}

async function call(s: Stack, path: string, token: string) {
  const r = await request(`${s.url}${path}`, { headers: { accept: 'application/json', authorization: `Bearer ${token}` } });
  const body = await r.body.text();
  return { status: r.statusCode, headers: r.headers, body };
}

async function metric(s: Stack, name: string, labels: string): Promise<number> {
  const all = await s.server.runtime.metrics.registry.metrics();
  const line = all.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

function stack(t: Parameters<typeof startStack>[0], opts: { now?: () => number; audiences?: (clientId: string) => string[] } = {}) {
  return startStack(t, {
    now: opts.now,
    routes: ROUTES,
    edit: (raw) => {
      const oidc = raw.oidc as Record<string, unknown>;
      oidc.bearerAudiences = opts.audiences ? opts.audiences(String(oidc.clientId)) : [String(oidc.clientId)];
      oidc.introspection = { cacheTtl: '30s', negativeCacheTtl: '5s' };
    },
  });
}

test('an opaque token the IdP vouches for passes, with its identity; one IdP request for many calls', async (t) => {
  const s = await stack(t);
  const token = await aliceToken(s);
  for (let i = 0; i < 5; i++) {
    const r = await call(s, `/api/items/${i}`, token);
    assert.equal(r.status, 200, r.body);
    assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'alice');
  }
  assert.equal(await metric(s, 'portcullis_introspection_requests_total', 'result="active"'), 1, 'asked once, then cached');
  assert.equal(await metric(s, 'portcullis_introspection_cache_total', 'result="hit"'), 4);
  assert.equal((await call(s, '/mixed/x', token)).status, 200, 'jwt-then-introspect: an opaque token is introspected');
  const denied = await call(s, '/admin-api/x', token);
  assert.equal(denied.status, 403, 'the route\'s rule still decides');
});

test('tokens the IdP does not vouch for are refused with invalid_token: unknown, a longer copy, a shorter copy, another audience', async (t) => {
  const s = await stack(t);
  const token = await aliceToken(s);
  for (const bad of ['not-a-token-at-all', `${token}x`, token.slice(0, -1), `${token.slice(0, 20)}${'A'.repeat(token.length - 20)}`]) {
    const r = await call(s, '/api/x', bad);
    assert.equal(r.status, 401, bad.slice(0, 30));
    assert.match(String(r.headers['www-authenticate']), /Bearer .*error="invalid_token"/);
    assert.equal(JSON.parse(r.body).error, 'invalid_token');
  }
  assert.equal((await call(s, '/api/x', token)).status, 200, 'the real token still passes: no look-alike poisoned its entry');

  const other = await stack(t, { audiences: () => ['some-other-api'] });
  const otherToken = await aliceToken(other);
  assert.equal((await call(other, '/api/x', otherToken)).status, 401, 'issued to a client that is not an accepted audience');
});

test('revocation lag: a token revoked at the IdP is refused once cacheTtl has passed, not before, and not after', async (t) => {
  let offset = 0;
  const s = await stack(t, { now: () => Date.now() + offset });
  const token = await aliceToken(s);
  assert.equal((await call(s, '/api/x', token)).status, 200);
  // Revoke at the IdP (RFC 7009), as an admin or the user's sign-out elsewhere would.
  const revoked = await request(`${s.idp.issuer}/token/revocation`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${s.idp.clientId}:${s.idp.clientSecret}`).toString('base64')}` },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
  });
  await revoked.body.dump();
  assert.equal(revoked.statusCode, 200);
  offset += 29_000;
  assert.equal((await call(s, '/api/x', token)).status, 200, 'within cacheTtl the cached answer is used: the documented lag');
  offset += 1_001;
  assert.equal((await call(s, '/api/x', token)).status, 401, 'refused within cacheTtl + 1 s of the revocation');
});

test('the IdP unreachable: a new token is refused with 503 (never allowed), a cached one keeps working', async (t) => {
  const s = await stack(t);
  const token = await aliceToken(s);
  assert.equal((await call(s, '/api/x', token)).status, 200);
  // A second token, not yet seen by Portcullis: a second sign-in.
  const second = await aliceToken(s);
  await s.idp.close();
  const r = await call(s, '/api/y', second);
  assert.equal(r.status, 503, r.body);
  assert.equal(JSON.parse(r.body).error, 'ERR_IDP_UNAVAILABLE');
  assert.equal((await call(s, '/api/z', token)).status, 200, 'the cached positive keeps working until its TTL');
  assert.ok(await metric(s, 'portcullis_introspection_requests_total', 'result="error"') >= 1);
});

test('an introspection endpoint that hangs is a 504 after oidc.timeout, not a hang; one that answers garbage is a 502', async (t) => {
  // A minimal provider: discovery, empty keys, and an introspection endpoint that misbehaves on demand.
  let mode: 'hang' | 'garbage' = 'hang';
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const server = createServer((req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        issuer, authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks`,
        introspection_endpoint: `${issuer}/introspect`, response_types_supported: ['code'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'],
      }));
    } else if (req.url === '/jwks') res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}');
    else if (req.url === '/introspect' && mode === 'garbage') res.writeHead(200, { 'content-type': 'text/html' }).end('<html>\x1b[31mnope</html>');
    else if (req.url !== '/introspect') res.writeHead(404).end();
    // 'hang': never answers
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  t.after(() => { server.closeAllConnections(); server.close(); });
  const idp = new IdentityProvider({
    issuer, clientId: 'c', clientSecret: 's', redirectUri: 'http://127.0.0.1/cb', tokenEndpointAuthMethod: 'client_secret_basic',
    scopes: ['openid'], clockToleranceSec: 30, userinfo: false, idTokenSigningAlgs: ['RS256'], timeoutMs: 400, bearerAudiences: ['a'], bearerTokenType: 'any',
  } as ConstructorParameters<typeof IdentityProvider>[0]);
  t.after(() => idp.close());
  void idp.start();
  await idp.waitReady(5_000);
  const started = Date.now();
  await assert.rejects(idp.introspect('tok'), (e: PortcullisError) => e.code === 'ERR_IDP_TIMEOUT' && e.statusCode === 504);
  assert.ok(Date.now() - started < 3_000, 'bounded by oidc.timeout');
  mode = 'garbage';
  await assert.rejects(idp.introspect('tok'), (e: PortcullisError) => e.code === 'ERR_IDP_BAD_RESPONSE' && e.statusCode === 502);
});

test('a back-channel logout or an admin revoke of the user drops their cached introspection answers', async (t) => {
  const s = await stack(t);
  const token = await aliceToken(s);
  assert.equal((await call(s, '/api/x', token)).status, 200);
  assert.equal((await call(s, '/api/x', token)).status, 200);
  assert.equal(await metric(s, 'portcullis_introspection_requests_total', 'result="active"'), 1);
  await s.server.runtime.revokeSessions({ sub: 'alice' }, 'admin');
  assert.equal((await call(s, '/api/x', token)).status, 200, 'still active at the IdP');
  assert.equal(await metric(s, 'portcullis_introspection_requests_total', 'result="active"'), 2, 'asked again after the revoke');
});
