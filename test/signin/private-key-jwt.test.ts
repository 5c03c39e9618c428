// private_key_jwt client authentication (RFC 7523, OIDC Core §9) end to end against oidc-provider with
// a client registered for private_key_jwt and no secret, whose jwks_uri is Portcullis's own
// /oauth2/client-jwks.json: sign-in (token), refresh, sign-out (revocation), introspection, key
// rotation through the jwks_uri, a key the IdP does not know, and what the endpoint publishes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { decodeJwt, decodeProtectedHeader, type JWK } from 'jose';
import { startStack, freePort, TEST_SESSION_SECRET, type Stack } from '../helpers/stack.js';
import { startTestIdp, type CleanupScope, type TestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { loginViaHttp, type CookieJar } from '../helpers/browserless-login.js';
import { findSecretsInLogs } from '../helpers/log-scan.js';
import { validateConfigObject, formatIssues } from '../../src/config/index.js';
import { startServer } from '../../src/server.js';
import type { ActiveSession } from '../../src/session/sessions.js';
import { PortcullisError } from '../../src/errors.js';

const ALICE = { user: 'alice', password: 'alice-password' };
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth'];

export function ecKey(): KeyObject { return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey; }
export function rsaKey(bits = 2048): KeyObject { return generateKeyPairSync('rsa', { modulusLength: bits }).privateKey; }
export const jwkOf = (k: KeyObject, extra: Record<string, unknown> = {}) => ({ ...k.export({ format: 'jwk' }), ...extra });
export const pemOf = (k: KeyObject) => String(k.export({ format: 'pem', type: 'pkcs8' }));

/** A file in a fresh temporary directory, removed by the test's cleanup. */
export function tempFile(t: CleanupScope, name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-pkjwt-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, name);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

/** The client assertions the IdP received, with the oidc-provider route they were sent to. */
function recordAssertions(idp: TestIdp): Array<{ route: string; assertion: string }> {
  const seen: Array<{ route: string; assertion: string }> = [];
  idp.use(async (ctx: { oidc?: { route?: string; params?: { client_assertion?: string } } }, next: () => Promise<void>) => {
    await next();
    const a = ctx.oidc?.params?.client_assertion;
    if (typeof a === 'string') seen.push({ route: String(ctx.oidc?.route), assertion: a });
  });
  return seen;
}

function pkjwtStack(t: CleanupScope, keysFile: string, opts: { routes?: Array<Record<string, unknown>>; audience?: 'issuer' | 'token_endpoint'; jwks?: { keys: object[] }; bearerAudiences?: string[] } = {}): Promise<Stack> {
  return startStack(t, {
    routes: opts.routes,
    idp: (url) => ({ tokenEndpointAuthMethod: 'private_key_jwt', ...(opts.jwks ? { jwks: opts.jwks } : { jwksUri: `${url}/oauth2/client-jwks.json` }) }),
    edit: (raw) => {
      const oidc = raw.oidc as Record<string, unknown>;
      delete oidc.clientSecret;
      Object.assign(oidc, { tokenEndpointAuthMethod: 'private_key_jwt', clientKeysFile: keysFile, ...(opts.audience ? { clientAssertionAudience: opts.audience } : {}), ...(opts.bearerAudiences ? { bearerAudiences: opts.bearerAudiences } : {}) });
    },
  });
}

async function sessionRecord(s: Stack, jar: CookieJar) {
  const cookies = { portcullis: jar.get('portcullis', s.url) };
  const lookup = await s.server.runtime.sessions.lookup(cookies);
  assert.equal(lookup.kind, 'valid');
  const session = (lookup as { session: ActiveSession }).session;
  const record = await s.server.runtime.sessions.record(session, cookies);
  assert.ok(record);
  return record;
}

async function clientJwks(url: string): Promise<{ status: number; cacheControl: string | undefined; keys: JWK[] }> {
  const r = await request(`${url}/oauth2/client-jwks.json`);
  const body = await r.body.json() as { keys: JWK[] };
  return { status: r.statusCode, cacheControl: r.headers['cache-control'] as string | undefined, keys: body.keys };
}

test('private_key_jwt: sign-in, refresh, token exchange, introspection and sign-out revocation all authenticate with a fresh ES256 assertion', async (t) => {
  const key = ecKey();
  const file = tempFile(t, 'client.pem', pemOf(key));
  const s = await pkjwtStack(t, file, {
    routes: [
      { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: 'introspect' },
      { name: 'orders', match: { path: '/orders' }, upstream: '{upstream}', passAuthorization: true, tokenExchange: { audience: 'https://orders.example' } },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}', passAccessToken: true },
    ],
    // An introspected token without `aud` is held to its client_id.
    bearerAudiences: ['portcullis'],
  });
  assert.equal(s.idp.client.token_endpoint_auth_method, 'private_key_jwt');
  const seen = recordAssertions(s.idp);

  // Token request (authorization_code).
  const login = await loginViaHttp(`${s.url}/hello`, ALICE);
  assert.equal(login.status, 200, login.body.slice(0, 300));
  assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'alice');
  const token = seen.filter((a) => a.route === 'token');
  assert.equal(token.length, 1, 'one token request, with a client assertion');
  const header = decodeProtectedHeader(token[0]!.assertion);
  const published = await clientJwks(s.url);
  assert.equal(header.alg, 'ES256');
  assert.equal(header.kid, published.keys[0]!.kid, 'the assertion names the published key');
  const payload = decodeJwt(token[0]!.assertion);
  assert.equal(payload.iss, s.idp.clientId);
  assert.equal(payload.sub, s.idp.clientId);
  assert.equal(payload.aud, s.idp.issuer, 'aud: the issuer (the default)');
  assert.ok(typeof payload.jti === 'string' && payload.jti.length >= 16, 'a jti');
  assert.ok(payload.exp! - payload.iat! <= 60, 'short-lived');

  // Refresh (through the same code the session refresh uses).
  const record = await sessionRecord(s, login.jar);
  assert.ok(record.refreshToken, 'a refresh token was issued');
  const refreshed = await s.server.runtime.providers.first.idp.refresh(record.refreshToken!, record.claims, record.idToken);
  assert.equal(refreshed.claims.sub, 'alice');
  const refreshAssertions = seen.filter((a) => a.route === 'token');
  assert.equal(refreshAssertions.length, 2, 'the refresh request carried an assertion');
  assert.notEqual(decodeJwt(refreshAssertions[1]!.assertion).jti, payload.jti, 'a fresh jti per request');

  // Token exchange (RFC 8693) at the token endpoint, for the orders route's upstream.
  const orders = await request(`${s.url}/orders/1`, { headers: { cookie: login.jar.header(s.url), accept: 'application/json' } });
  const ordersBody = await orders.body.text();
  assert.equal(orders.statusCode, 200, ordersBody);
  assert.match(String(s.upstream.requests.at(-1)!.headers.authorization), /^Bearer \S+$/, 'the upstream got an exchanged token');
  assert.equal(seen.filter((a) => a.route === 'token').length, 3, 'the exchange request carried an assertion');

  // Introspection of alice's (opaque) access token on a bearer route.
  await request(`${s.url}/whoami`, { headers: { cookie: login.jar.header(s.url), accept: 'application/json' } }).then((r) => r.body.dump());
  const accessToken = String(s.upstream.requests.at(-1)!.headers['x-forwarded-access-token']);
  assert.ok(accessToken.length > 10);
  const api = await request(`${s.url}/api/x`, { headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' } });
  const apiBody = await api.body.text();
  assert.equal(api.statusCode, 200, apiBody);
  assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'alice');
  assert.equal(seen.filter((a) => a.route === 'introspection').length, 1, 'the introspection request carried an assertion');

  // Sign-out revokes the refresh token at the IdP.
  const current = await sessionRecord(s, login.jar);
  const out = await request(`${s.url}/oauth2/sign_out`, { method: 'POST', headers: { origin: s.url, cookie: login.jar.header(s.url), 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  await out.body.dump();
  assert.equal(out.statusCode, 303);
  assert.equal(seen.filter((a) => a.route === 'revocation').length, 1, 'the revocation request carried an assertion');
  await assert.rejects(s.server.runtime.providers.first.idp.refresh(current.refreshToken!, current.claims, current.idToken),
    (err: unknown) => err instanceof PortcullisError && err.code === 'ERR_REFRESH_INVALID_GRANT', 'the revoked refresh token is refused');

  // Every assertion is single use and none reached a log line.
  const jtis = seen.map((a) => decodeJwt(a.assertion).jti);
  assert.equal(new Set(jtis).size, jtis.length, 'no jti repeats');
  const secrets = new Map<string, string>([['private key d', String(jwkOf(key).d)], ...seen.map((a, i) => [`assertion ${i}`, a.assertion] as [string, string])]);
  assert.deepEqual(findSecretsInLogs(s.logs, secrets), []);
});

test('private_key_jwt with RS256 and PS256 JWKs, aud = the token endpoint, and the IdP holding the keys inline', async (t) => {
  for (const alg of ['RS256', 'PS256'] as const) {
    const key = rsaKey();
    const jwk = jwkOf(key, { kid: `rsa-${alg}`, alg });
    const file = tempFile(t, 'client.jwks.json', JSON.stringify({ keys: [jwk] }));
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
    const s = await pkjwtStack(t, file, { audience: 'token_endpoint', jwks: { keys: [pub] } });
    const seen = recordAssertions(s.idp);
    const login = await loginViaHttp(`${s.url}/`, ALICE);
    assert.equal(login.status, 200, `${alg}: ${login.body.slice(0, 300)}`);
    const a = seen.find((x) => x.route === 'token')!;
    assert.equal(decodeProtectedHeader(a.assertion).alg, alg);
    assert.equal(decodeProtectedHeader(a.assertion).kid, `rsa-${alg}`, 'the file\'s kid');
    assert.equal(decodeJwt(a.assertion).aud, `${s.idp.issuer}/token`, 'aud: the token endpoint');
  }
});

test('a key the IdP does not know: the IdP refuses it → ERR_CALLBACK_CLIENT_AUTH with the IdP\'s words for the operator', async (t) => {
  const registered = ecKey();
  const other = ecKey();
  const file = tempFile(t, 'client.pem', pemOf(other));
  const pub = jwkOf(registered);
  delete (pub as { d?: string }).d;
  const s = await pkjwtStack(t, file, { jwks: { keys: [pub] } });
  const r = await loginViaHttp(`${s.url}/`, { ...ALICE });
  assert.equal(r.status, 502, r.body.slice(0, 300));
  assert.match(r.body, /ERR_CALLBACK_CLIENT_AUTH|could not authenticate to the identity provider/);
  const line = s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => JSON.stringify(l).includes('ERR_CALLBACK_CLIENT_AUTH'));
  assert.ok(line, 'the refusal is logged with its code');
  assert.match(JSON.stringify(line), /invalid_client/, 'with the IdP\'s own error');
  // The same through `portcullis doctor`'s probe: a made-up code with this client authentication.
  const idp = s.server.runtime.providers.first.idp;
  const query = new URLSearchParams({ code: 'made-up', state: 'x', iss: s.idp.issuer }).toString();
  await assert.rejects(idp.completeSignIn(query, { state: 'x', nonce: 'n', verifier: 'v'.repeat(43) }),
    (err: unknown) => err instanceof PortcullisError && err.code === 'ERR_CALLBACK_CLIENT_AUTH');
});

test('key rotation through the jwks_uri: a second key published, then promoted — the IdP takes the new key without re-registration', async (t) => {
  const oldKey = ecKey();
  const newKey = rsaKey();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const idp = await startTestIdp(t, {
    redirectUris: [`${url}/oauth2/callback`],
    tokenEndpointAuthMethod: 'private_key_jwt',
    jwksUri: `${url}/oauth2/client-jwks.json`,
  });
  const seen = recordAssertions(idp);
  const upstream = await startTestUpstream(t);
  const keysFile = tempFile(t, 'client.jwks.json', '');
  /** One Portcullis at the registered URL with this key file; a rotation step is a restart, like a Kubernetes rollout. */
  const run = async (keys: KeyObject[]) => {
    writeFileSync(keysFile, JSON.stringify({ keys: keys.map((k) => jwkOf(k)) }));
    const r = validateConfigObject({
      listen: { host: '127.0.0.1', port }, publicUrl: url, metrics: false, logLevel: 'warn',
      oidc: { issuer: idp.issuer, clientId: idp.clientId, tokenEndpointAuthMethod: 'private_key_jwt', clientKeysFile: keysFile, timeout: '5s' },
      session: { secrets: [TEST_SESSION_SECRET] }, rateLimit: { signIn: 0 },
      routes: [{ name: 'app', match: { path: '/' }, upstream: upstream.url }],
    }, {});
    if (!r.ok) throw new Error(formatIssues(r.issues));
    const server = await startServer(r.config, { logStream: new (await import('node:stream')).PassThrough() });
    t.after(() => server.close());
    await server.runtime.providers.waitReady(10_000);
    return server;
  };
  const kidOf = (a: { assertion: string }) => decodeProtectedHeader(a.assertion).kid;

  // Stage: the old key signs, the new one is published second; the IdP fetches both.
  let server = await run([oldKey, newKey]);
  const staged = await clientJwks(url);
  assert.equal(staged.keys.length, 2, 'both keys published');
  assert.equal((await loginViaHttp(`${url}/`, ALICE)).status, 200);
  const oldKid = kidOf(seen.at(-1)!);
  assert.equal(oldKid, staged.keys[0]!.kid);
  await server.close();

  // Promote: the new key signs. Nothing changes at the IdP.
  server = await run([newKey, oldKey]);
  assert.equal((await loginViaHttp(`${url}/`, ALICE)).status, 200, 'the IdP accepts the promoted key');
  assert.equal(kidOf(seen.at(-1)!), staged.keys[1]!.kid, 'signed with the new key');
  assert.equal(decodeProtectedHeader(seen.at(-1)!.assertion).alg, 'RS256');
  await server.close();

  // Retire the old key: only the new one is published, and sign-in goes on working.
  server = await run([newKey]);
  assert.deepEqual((await clientJwks(url)).keys.map((k) => k.kid), [staged.keys[1]!.kid]);
  assert.equal((await loginViaHttp(`${url}/`, ALICE)).status, 200);
  await server.close();
});

test('/oauth2/client-jwks.json publishes every key\'s public part only, with kid, alg and use: sig (RSA and EC, JWK and PEM)', async (t) => {
  for (let i = 0; i < 6; i++) {
    const keys = [i % 2 ? rsaKey() : ecKey(), i % 3 ? ecKey() : rsaKey()];
    const asJwks = i % 2 === 0;
    const text = asJwks
      ? JSON.stringify({ keys: keys.map((k, j) => jwkOf(k, j === 0 ? { kid: `first-${i}` } : {})) })
      : keys.map(pemOf).join('\n');
    const file = tempFile(t, asJwks ? 'keys.json' : 'keys.pem', text);
    const r = validateConfigObject({
      publicUrl: 'http://127.0.0.1:1', listen: { host: '127.0.0.1', port: await freePort() }, metrics: false, logLevel: 'silent',
      oidc: { issuer: 'http://127.0.0.1:9', clientId: 'c', tokenEndpointAuthMethod: 'private_key_jwt', clientKeysFile: file },
      session: { secrets: [TEST_SESSION_SECRET] },
      routes: [{ name: 'app', match: { path: '/' }, upstream: 'http://127.0.0.1:9' }],
    }, {});
    assert.ok(r.ok, r.ok ? '' : formatIssues(r.issues));
    const server = await startServer(r.config, { logStream: new (await import('node:stream')).PassThrough() });
    t.after(() => server.close());
    const got = await clientJwks(server.url);
    assert.equal(got.status, 200);
    assert.equal(got.cacheControl, 'public, max-age=300');
    assert.equal(got.keys.length, 2);
    const text2 = JSON.stringify(got.keys);
    for (const [j, k] of got.keys.entries()) {
      for (const m of PRIVATE_MEMBERS) assert.equal((k as Record<string, unknown>)[m], undefined, `key ${j} has no ${m}`);
      assert.equal(k.use, 'sig');
      assert.ok(typeof k.kid === 'string' && k.kid.length > 0);
      assert.equal(k.alg, k.kty === 'RSA' ? 'RS256' : 'ES256');
      const priv = keys[j]!.export({ format: 'jwk' }) as Record<string, string>;
      for (const m of PRIVATE_MEMBERS) if (priv[m]) assert.ok(!text2.includes(priv[m]!), `no private member value (${m}) anywhere in the answer`);
      assert.equal(k.kty === 'RSA' ? k.n : k.x, k.kty === 'RSA' ? priv.n : priv.x, 'the public key of the file\'s key');
    }
    if (asJwks) assert.equal(got.keys[0]!.kid, `first-${i}`, 'the file\'s kid');
    else {
      const { calculateJwkThumbprint } = await import('jose');
      assert.equal(got.keys[0]!.kid, await calculateJwkThumbprint(got.keys[0]!), 'PEM: kid = RFC 7638 thumbprint');
    }
    // Served on every host, never proxied.
    const other = await request(`${server.url}/oauth2/client-jwks.json`, { headers: { host: 'elsewhere.example' } });
    assert.equal(other.statusCode, 200);
    await other.body.dump();
  }
});

test('/oauth2/client-jwks.json is an empty set with a client secret', async (t) => {
  const s = await startStack(t);
  const got = await clientJwks(s.url);
  assert.deepEqual(got.keys, []);
});

test('private_key_jwt with a certificate (Entra ID certificate credentials): every assertion names it by x5t and x5t#S256; /oauth2/client-jwks.json publishes x5c', async (t) => {
  const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
  const cert = new X509Certificate(fixture('entra-client-cert.pem'));
  const file = tempFile(t, 'client.pem', `${fixture('entra-client-key.pem')}\n${fixture('entra-client-cert.pem')}`);
  const s = await pkjwtStack(t, file, { audience: 'token_endpoint' });
  const seen = recordAssertions(s.idp);
  const login = await loginViaHttp(`${s.url}/hello`, ALICE);
  assert.equal(login.status, 200, login.body.slice(0, 300));
  const token = seen.filter((a) => a.route === 'token');
  assert.equal(token.length, 1);
  const header = decodeProtectedHeader(token[0]!.assertion);
  assert.equal(header.alg, 'RS256');
  assert.equal(header.x5t, createHash('sha1').update(cert.raw).digest('base64url'), 'x5t: SHA-1 of the DER (Entra ID)');
  assert.equal(header['x5t#S256'], createHash('sha256').update(cert.raw).digest('base64url'), 'x5t#S256: SHA-256 of the DER');
  assert.equal(decodeJwt(token[0]!.assertion).aud, `${s.idp.issuer}/token`, 'aud: the token endpoint, as Entra ID wants');
  const published = await clientJwks(s.url);
  assert.equal(published.keys.length, 1);
  assert.deepEqual(published.keys[0]!.x5c, [cert.raw.toString('base64')]);
  assert.equal(published.keys[0]!.x5t, header.x5t);
  assert.equal(published.keys[0]!['x5t#S256'], header['x5t#S256']);
  for (const m of PRIVATE_MEMBERS) assert.equal((published.keys[0] as Record<string, unknown>)[m], undefined, `no ${m}`);
});
