// Bearer routes accept access tokens only. An ID token or a back-channel logout token is signed by
// the same IdP key and may name a listed audience (the client id, when it is in bearerAudiences),
// so signature, iss, aud and exp alone would let it through: it is refused by its type (`typ`
// header `logout+jwt`, or any typ other than JWT / at+jwt) and by the claims only those tokens
// carry (`nonce`, `at_hash`, the back-channel `events`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { importJWK, SignJWT, type JWK } from 'jose';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { TEST_CLIENT_ID } from '../helpers/idp.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import type { ActiveSession } from '../../src/session/sessions.js';

function idpKey(): JWK {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK;
  return { ...jwk, kid: 'idp-key', alg: 'RS256', use: 'sig' };
}

test('bearer routes accept access tokens only: ID tokens and logout tokens for a listed audience are refused', async (t) => {
  const key = idpKey();
  const s = await startStack(t, {
    idp: { keys: { keys: [key] } },
    routes: [
      { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
    // The client id is a listed audience: exactly the audience of the IdP's ID and logout tokens.
    edit: (raw) => { (raw.oidc as Record<string, unknown>).bearerAudiences = ['urn:api', TEST_CLIENT_ID]; },
  });
  const signing = await importJWK(key, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  const claims = (over: Record<string, unknown> = {}) => ({ iss: s.idp.issuer, aud: 'urn:api', sub: 'svc-1', iat: now, exp: now + 300, ...over });
  const sign = (c: Record<string, unknown>, header: Record<string, unknown> = {}) => new SignJWT(c).setProtectedHeader({ alg: 'RS256', kid: 'idp-key', ...header }).sign(signing);
  const call = async (token: string) => {
    const r = await request(`${s.url}/api/x`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
  };

  const accepted: Array<[string, string]> = [
    ['no typ', await sign(claims())],
    ['typ JWT', await sign(claims(), { typ: 'JWT' })],
    ['typ at+jwt (RFC 9068)', await sign(claims({ client_id: 'svc', jti: randomUUID() }), { typ: 'at+jwt' })],
    ['typ application/at+jwt', await sign(claims(), { typ: 'application/at+jwt' })],
    ['an access token for the client id as audience', await sign(claims({ aud: TEST_CLIENT_ID }), { typ: 'at+jwt' })],
  ];
  for (const [what, token] of accepted) {
    const r = await call(token);
    assert.equal(r.status, 200, `${what}: ${r.body.slice(0, 200)}`);
    assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], String(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub));
  }

  const idToken = claims({ aud: TEST_CLIENT_ID, sub: 'alice', nonce: 'n-0S6_WzA2Mj', at_hash: 'HK6E_P6Dh8Y93mRNtsDB1Q', auth_time: now, azp: TEST_CLIENT_ID });
  const refused: Array<[string, string]> = [
    ['an ID token (nonce, at_hash)', await sign(idToken, { typ: 'JWT' })],
    ['an ID token with only a nonce', await sign(claims({ aud: TEST_CLIENT_ID, nonce: 'abc' }))],
    ['an ID token with only at_hash', await sign(claims({ aud: TEST_CLIENT_ID, at_hash: 'HK6E_P6Dh8Y93mRNtsDB1Q' }))],
    ['a logout token (typ logout+jwt, events)', await sign(claims({ aud: TEST_CLIENT_ID, sub: 'alice', jti: randomUUID(), events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }), { typ: 'logout+jwt' })],
    ['a logout token without typ (events claim)', await sign(claims({ aud: TEST_CLIENT_ID, sub: 'alice', jti: randomUUID(), events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }))],
    ['typ logout+jwt alone', await sign(claims(), { typ: 'logout+jwt' })],
    ['typ application/logout+jwt', await sign(claims(), { typ: 'application/logout+jwt' })],
    ['another typ (id_token+jwt)', await sign(claims(), { typ: 'id_token+jwt' })],
    ['another typ (dpop+jwt)', await sign(claims(), { typ: 'dpop+jwt' })],
    ['nonce on a token typed at+jwt', await sign(claims({ nonce: 'abc' }), { typ: 'at+jwt' })],
  ];
  for (const [what, token] of refused) {
    const r = await call(token);
    assert.equal(r.status, 401, what);
    assert.match(String(r.headers['www-authenticate']), /^Bearer .*error="invalid_token"/, what);
  }
});

test('a real ID token from the IdP, for the client id as a listed audience, is refused as a bearer token', async (t) => {
  const s = await startStack(t, {
    routes: [
      { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
    edit: (raw) => { (raw.oidc as Record<string, unknown>).bearerAudiences = [TEST_CLIENT_ID]; },
  });
  const { jar } = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' });
  const cookies = { portcullis: jar.get('portcullis', s.url) };
  const lookup = await s.server.runtime.sessions.lookup(cookies);
  assert.equal(lookup.kind, 'valid');
  const record = await s.server.runtime.sessions.record((lookup as { session: ActiveSession }).session, cookies);
  const idToken = record!.idToken;
  const payload = JSON.parse(Buffer.from(idToken.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
  assert.equal(payload.aud, TEST_CLIENT_ID, 'the ID token names a listed audience');
  const before = s.upstream.requests.length;
  const r = await request(`${s.url}/api/x`, { headers: { authorization: `Bearer ${idToken}`, accept: 'application/json' } });
  await r.body.dump();
  assert.equal(r.statusCode, 401);
  assert.match(String(r.headers['www-authenticate']), /^Bearer .*error="invalid_token"/);
  assert.equal(s.upstream.requests.length, before, 'nothing reached the upstream');
});

test('oidc.bearerTokenType: at+jwt accepts only RFC 9068-typed access tokens', async (t) => {
  const key = idpKey();
  const s = await startStack(t, {
    idp: { keys: { keys: [key] } },
    routes: [
      { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
    edit: (raw) => { Object.assign(raw.oidc as Record<string, unknown>, { bearerAudiences: ['urn:api'], bearerTokenType: 'at+jwt' }); },
  });
  const signing = await importJWK(key, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: s.idp.issuer, aud: 'urn:api', sub: 'svc-1', iat: now, exp: now + 300, client_id: 'svc', jti: randomUUID() };
  const sign = (header: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'idp-key', ...header }).sign(signing);
  const status = async (token: string) => {
    const r = await request(`${s.url}/api/x`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
    await r.body.dump();
    return r.statusCode;
  };
  assert.equal(await status(await sign({ typ: 'at+jwt' })), 200);
  assert.equal(await status(await sign({ typ: 'application/at+jwt' })), 200);
  assert.equal(await status(await sign({ typ: 'JWT' })), 401, 'typ JWT is not enough when at+jwt is required');
  assert.equal(await status(await sign({})), 401, 'no typ is not enough either');
});
