// Issue 13 item 7: a cached X-Portcullis-Assertion must never carry claims other than the ones the
// request is served with. It was cached by sid (or `bearer:<sub>`): an assertion outlived a refresh
// that changed the claims, and two bearer tokens of one subject shared one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createRemoteJWKSet, decodeJwt, importJWK, jwtVerify, SignJWT, type JWK } from 'jose';
import { request } from 'undici';
import { AssertionSigner } from '../../src/identity/assertion.js';
import { startStack } from '../helpers/stack.js';

const quiet = { warn: () => {} };

async function signer(now: () => number): Promise<AssertionSigner> {
  return AssertionSigner.create('https://apps.example.com', { keysFile: undefined, algorithm: 'ES256' }, quiet, now);
}

test('a session\'s assertion follows its claims: a refreshed (changed) claims object gets a new one at once', async () => {
  let t = 1_000_000;
  const s = await signer(() => t);
  const before = { sub: 'alice', email: 'alice@example.com', groups: ['admin', 'dev'] };
  const a1 = await s.assertion('svc', 'urn:svc', 120, { sid: 'sid-1', claims: before });
  t += 1000;
  assert.equal(await s.assertion('svc', 'urn:svc', 120, { sid: 'sid-1', claims: before }), a1, 'reused while the claims are the same');
  // A refresh replaced the claims: the IdP no longer lists `admin`.
  const after = { sub: 'alice', email: 'alice@example.com', groups: ['dev'] };
  const a2 = await s.assertion('svc', 'urn:svc', 120, { sid: 'sid-1', claims: after });
  assert.notEqual(a2, a1, 'same session, new claims: a new assertion');
  assert.deepEqual(decodeJwt(a2).groups, ['dev']);
  assert.equal(decodeJwt(a2).sid, 'sid-1');
  assert.equal(await s.assertion('svc', 'urn:svc', 120, { sid: 'sid-1', claims: after }), a2);
  // Per route (and audience): another route's assertion is its own.
  const other = await s.assertion('other', 'urn:other', 120, { sid: 'sid-1', claims: after });
  assert.notEqual(other, a2);
  assert.equal(decodeJwt(other).aud, 'urn:other');
  // Half the lifetime later it is renewed.
  t += 61_000;
  assert.notEqual(await s.assertion('svc', 'urn:svc', 120, { sid: 'sid-1', claims: after }), a2);
});

test('two bearer tokens of one subject get their own assertions; the same token reuses its one', async () => {
  const s = await signer(() => 5_000_000);
  const viewer = { sub: 'svc-1', groups: ['viewer'] };
  const admin = { sub: 'svc-1', groups: ['admin'] };
  // Bearer claims are a new object on every request (each request verifies its token).
  const a = await s.assertion('api', 'urn:api', 120, { claims: { ...viewer }, accessToken: 'token-viewer' });
  const b = await s.assertion('api', 'urn:api', 120, { claims: { ...admin }, accessToken: 'token-admin' });
  assert.notEqual(a, b);
  assert.deepEqual(decodeJwt(a).groups, ['viewer']);
  assert.deepEqual(decodeJwt(b).groups, ['admin'], 'not the first token\'s claims');
  assert.equal(await s.assertion('api', 'urn:api', 120, { claims: { ...viewer }, accessToken: 'token-viewer' }), a, 'the same token: reused');
  assert.equal(await s.assertion('api', 'urn:api', 120, { claims: { ...admin }, accessToken: 'token-admin' }), b);
});

function idpKey(): JWK {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK;
  return { ...jwk, kid: 'idp-key', alg: 'RS256', use: 'sig' };
}

test('through the proxy: bearer tokens of one subject with different groups reach the upstream with their own assertions', async (t) => {
  const key = idpKey();
  const s = await startStack(t, {
    idp: { keys: { keys: [key] } },
    routes: [
      { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true, assertion: { audience: 'urn:api', ttl: '2m' } },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
    edit: (raw) => { (raw.oidc as Record<string, unknown>).bearerAudiences = ['urn:api']; },
  });
  const signing = await importJWK(key, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  const token = (groups: string[]) => new SignJWT({ iss: s.idp.issuer, aud: 'urn:api', sub: 'svc-1', groups, iat: now, exp: now + 300 })
    .setProtectedHeader({ alg: 'RS256', kid: 'idp-key' }).sign(signing);
  const jwks = createRemoteJWKSet(new URL(`${s.url}/oauth2/jwks.json`));
  const seen = async (tok: string) => {
    const r = await request(`${s.url}/api/x`, { headers: { authorization: `Bearer ${tok}`, accept: 'application/json' } });
    assert.equal(r.statusCode, 200);
    await r.body.dump();
    const jwt = String(s.upstream.requests.at(-1)!.headers['x-portcullis-assertion']);
    return { jwt, payload: (await jwtVerify(jwt, jwks, { issuer: s.url, audience: 'urn:api' })).payload };
  };
  const viewerToken = await token(['viewer']);
  const adminToken = await token(['admin']);
  const v1 = await seen(viewerToken);
  const a1 = await seen(adminToken);
  assert.deepEqual(v1.payload.groups, ['viewer']);
  assert.deepEqual(a1.payload.groups, ['admin'], 'the second token of svc-1 is not told it is a viewer');
  assert.equal(a1.payload.sub, 'svc-1');
  const v2 = await seen(viewerToken);
  assert.equal(v2.jwt, v1.jwt, 'one token: one cached assertion');
});
