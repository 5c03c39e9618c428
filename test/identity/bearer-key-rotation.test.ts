// Bearer JWTs across an IdP key rotation, against the real dev IdP (oidc-provider): a token signed
// with a freshly published key is accepted within KEY_REFRESH_COOLDOWN_MS of Portcullis's last JWKS
// fetch, and a flood of tokens naming unknown kids costs the IdP at most one JWKS request per
// cooldown; and while the IdP is unreachable, the last good keys go on verifying even once they are
// older than the cache age. JWKS requests are counted at the IdP's own HTTP server (node's
// http.server diagnostics channel), not by Portcullis's metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { importJWK, SignJWT, type JWK } from 'jose';
import { request } from 'undici';
import { IdentityProvider, KEY_REFRESH_COOLDOWN_MS } from '../../src/signin/idp.js';
import { listenOn } from '../../dev/devidp/net.js';
import { startTestIdp } from '../helpers/idp.js';
import { startStack } from '../helpers/stack.js';

/** Slack for a loaded machine: request round trips and timer delays on top of the cooldown. */
const SLACK_MS = 2_000;

function rsaKey(kid: string): JWK {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK;
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

/** Times (ms since epoch) of every GET /jwks the server on `port` answers, from now until the test ends. */
function countJwksRequests(t: { after(fn: () => void): void }, port: () => number): number[] {
  const seen: number[] = [];
  const onRequest = (message: unknown) => {
    const { request: req, server } = message as { request: IncomingMessage; server: Server };
    if ((server.address() as AddressInfo | null)?.port === port() && req.url?.split('?')[0] === '/jwks') seen.push(Date.now());
  };
  subscribe('http.server.request.start', onRequest);
  t.after(() => unsubscribe('http.server.request.start', onRequest));
  return seen;
}

test(`bearer JWTs: a key rotated in at the IdP is trusted within ${KEY_REFRESH_COOLDOWN_MS} ms of the last JWKS fetch; unknown kids cost at most one JWKS request per cooldown`, { timeout: 60_000 }, async (t) => {
  const oldKey = rsaKey('old-key');
  const newKey = rsaKey('new-key');
  let idpPort = 0;
  const jwksAt = countJwksRequests(t, () => idpPort);
  const s = await startStack(t, {
    idp: { keys: { keys: [oldKey] } },
    routes: [
      { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
    edit: (raw) => { (raw.oidc as Record<string, unknown>).bearerAudiences = ['urn:api']; },
  });
  idpPort = s.idp.port;
  const sign = async (key: JWK, kid = key.kid!) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: s.idp.issuer, aud: 'urn:api', sub: 'svc-1', iat: now, exp: now + 300 })
      .setProtectedHeader({ alg: 'RS256', kid }).sign(await importJWK(key, 'RS256'));
  };
  const call = async (token: string): Promise<number> => {
    const r = await request(`${s.url}/api/x`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    await r.body.dump();
    return r.statusCode;
  };

  assert.equal(await call(await sign(oldKey)), 200, 'a token signed with the current key');
  assert.ok(jwksAt.length >= 1, 'Portcullis fetched the JWKS from the IdP');

  // Rotation as most IdPs do it: the new key published and used at once, the old one kept. The dev
  // IdP's keys are fixed at start, so it restarts on the same port (same issuer, same jwks_uri).
  await s.idp.close();
  await startTestIdp(t, { port: idpPort, keys: { keys: [newKey, oldKey] }, redirectUris: [`${s.url}/oauth2/callback`] });
  const lastFetchBeforeRotation = jwksAt.at(-1)!;

  const fresh = await sign(newKey);
  let status = await call(fresh);
  while (status !== 200 && Date.now() - lastFetchBeforeRotation < KEY_REFRESH_COOLDOWN_MS + SLACK_MS) {
    assert.equal(status, 401, 'refused while cooling down, never an error');
    await new Promise((r) => setTimeout(r, 200));
    status = await call(fresh);
  }
  const acceptedAfter = Date.now() - lastFetchBeforeRotation;
  t.diagnostic(`new-key token accepted ${acceptedAfter} ms after Portcullis's previous JWKS fetch`);
  assert.equal(status, 200, `a token signed with the new key is accepted within the cooldown (waited ${acceptedAfter} ms)`);
  assert.ok(jwksAt.at(-1)! > lastFetchBeforeRotation, 'accepted after a JWKS refetch at the IdP');
  assert.equal(await call(await sign(oldKey)), 200, 'the old key, still published, is still trusted');

  // A flood of tokens naming kids the IdP never had, for a little longer than one cooldown.
  const floodFrom = jwksAt.at(-1)!;
  const fetchesBefore = jwksAt.length;
  const floodMs = KEY_REFRESH_COOLDOWN_MS + 1_500;
  let sent = 0;
  while (Date.now() - floodFrom < floodMs) {
    assert.equal(await call(await sign(newKey, `forged-${randomUUID()}`)), 401, 'an unknown kid is a 401');
    sent++;
    await new Promise((r) => setTimeout(r, 5));
  }
  const fetches = jwksAt.slice(fetchesBefore);
  const allowed = Math.floor((Date.now() - floodFrom) / KEY_REFRESH_COOLDOWN_MS);
  t.diagnostic(`${sent} tokens with unknown kids in ${Date.now() - floodFrom} ms: ${fetches.length} JWKS requests at the IdP`);
  assert.ok(sent >= 20, `the flood was a flood (${sent} requests)`);
  assert.ok(fetches.length <= allowed, `${fetches.length} JWKS requests for ${sent} unknown kids; at most ${allowed} allowed`);
  assert.ok(fetches.length >= 1, 'an unknown kid still triggers a refetch once the cooldown is over');
  for (const [i, at] of fetches.entries()) {
    const previous = i === 0 ? floodFrom : fetches[i - 1]!;
    assert.ok(at - previous >= KEY_REFRESH_COOLDOWN_MS - 50, `JWKS request ${i + 1} came ${at - previous} ms after the one before`);
  }
  assert.equal(await call(fresh), 200, 'the real keys still verify after the flood');
});

test('the IdP unreachable and the key set older than its cache age: known keys still verify, unknown ones do not, and the IdP is asked at most once per cooldown', { timeout: 60_000 }, async (t) => {
  const key = rsaKey('known-key');
  const idp = await startTestIdp(t, { keys: { keys: [key] }, redirectUris: ['http://127.0.0.1:9/oauth2/callback'] });
  const cacheMaxAgeMs = 1_000;
  const signIn = new IdentityProvider({
    issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, tokenEndpointAuthMethod: 'client_secret_basic',
    scopes: ['openid'], clockToleranceSec: 30, userinfo: false, idTokenSigningAlgs: ['RS256'], timeoutMs: 2_000,
    redirectUri: 'http://127.0.0.1:9/oauth2/callback',
  }, { keyCacheMaxAgeMs: cacheMaxAgeMs });
  t.after(() => signIn.close());
  signIn.start().catch(() => {});
  await signIn.waitReady(10_000);
  const sign = async (k: JWK) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: idp.issuer, aud: 'urn:api', sub: 'svc-1', iat: now, exp: now + 300 })
      .setProtectedHeader({ alg: 'RS256', kid: k.kid! }).sign(await importJWK(k, 'RS256'));
  };
  const token = await sign(key);
  assert.equal((await signIn.verifyBearer(token, ['urn:api'])).sub, 'svc-1', 'verified while the IdP is up');

  // The IdP goes down: in its place on the same port, a server that answers every request 503.
  await idp.close();
  const down: string[] = [];
  const standIn = createServer((req, res) => { down.push(req.url ?? ''); res.writeHead(503).end(); });
  await listenOn(standIn, '127.0.0.1', idp.port);
  t.after(() => new Promise<void>((resolve) => { standIn.close(() => resolve()); standIn.closeAllConnections(); }));
  await new Promise((r) => setTimeout(r, cacheMaxAgeMs + 200));

  const t0 = Date.now();
  let verified = 0;
  while (Date.now() - t0 < KEY_REFRESH_COOLDOWN_MS + 1_500) {
    assert.equal((await signIn.verifyBearer(token, ['urn:api'])).sub, 'svc-1', 'a token with a known key verifies with the last good set');
    verified++;
    await new Promise((r) => setTimeout(r, 50));
  }
  const attempts = down.filter((u) => u.startsWith('/jwks')).length;
  t.diagnostic(`${verified} verifications in ${Date.now() - t0} ms with the IdP down: ${attempts} JWKS requests`);
  assert.ok(attempts >= 1, 'the IdP was asked again');
  assert.ok(attempts <= 2, `${attempts} JWKS requests in one cooldown and a half; at most 2 allowed`);
  await assert.rejects(signIn.verifyBearer(await sign(rsaKey('unknown-key')), ['urn:api']), (err: { statusCode?: number }) => err.statusCode === 401, 'an unknown key is still refused');
});
