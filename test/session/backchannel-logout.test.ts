// OIDC Back-Channel Logout 1.0 against the real dev IdP: a real logout ends stateless cookie
// sessions; forged, replayed or malformed logout tokens are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { SignJWT, importJWK, type JWK } from 'jose';
import { request } from 'undici';
import WebSocket from 'ws';
import { startStack } from '../helpers/stack.js';
import { CookieJar, followRedirects, loginViaHttp, parseForms } from '../helpers/browserless-login.js';

const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} };

function idpKey(): JWK {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK;
  return { ...jwk, kid: 'test-key', alg: 'RS256', use: 'sig' };
}

async function backchannelStack(t: Parameters<typeof startStack>[0]) {
  const key = idpKey();
  const s = await startStack(t, {
    idp: (url) => ({ keys: { keys: [key] }, backchannelLogoutUri: `${url}/oauth2/backchannel_logout`, backchannelLogoutSessionRequired: true }),
  });
  return { s, key };
}

async function postLogoutToken(url: string, token: string) {
  const r = await request(`${url}/oauth2/backchannel_logout`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: token }).toString(),
  });
  return { status: r.statusCode, body: await r.body.text() };
}

async function status(url: string, jar: CookieJar): Promise<number> {
  const r = await request(url, { headers: { accept: 'application/json', cookie: jar.header(url) } });
  await r.body.dump();
  return r.statusCode;
}

test('a sign-out at the IdP ends the stateless cookie session and its WebSocket (back-channel logout)', async (t) => {
  const { s } = await backchannelStack(t);
  // The stack's publicUrl must match the redirect URIs the IdP knows: the helper registered them for `url`.
  const { jar } = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' });
  assert.equal(await status(`${s.url}/x`, jar), 200);
  const ws = new WebSocket(`${s.url.replace('http', 'ws')}/live`, { headers: { cookie: jar.header(s.url) } });
  await new Promise((resolve, reject) => { ws.once('message', resolve); ws.once('error', reject); });
  const closed = new Promise((resolve) => ws.once('close', resolve));

  // Sign out at the IdP itself (as another application would): its end-session page, then "yes".
  const page = await followRedirects(`${s.idp.issuer}/session/end`, jar);
  const form = parseForms(page.body, page.finalUrl)[0]!;
  await followRedirects(form.action, jar, { method: 'POST', body: form.fields.toString(), headers: { origin: s.idp.issuer } });

  await closed;
  assert.equal(await status(`${s.url}/x`, jar), 401, 'the cookie still exists but its session is revoked');
  // Signing in again afterwards works (the revocation is of the old sessions only).
  const again = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password', jar: new CookieJar() });
  assert.equal(again.status, 200);
});

test('forged, malformed and replayed logout tokens are refused', async (t) => {
  const { s, key } = await backchannelStack(t);
  const { jar } = await loginViaHttp(`${s.url}/`, { user: 'alice', password: 'alice-password' });
  const signing = await importJWK(key, 'RS256');
  const other = await importJWK({ ...idpKey(), kid: 'test-key' }, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  const base = () => ({ iss: s.idp.issuer, aud: s.idp.clientId, iat: now, jti: randomUUID(), events: EVENT, sub: 'alice' });
  const sign = (claims: Record<string, unknown>, k = signing, alg = 'RS256') => new SignJWT(claims).setProtectedHeader({ alg, kid: 'test-key', typ: 'logout+jwt' }).sign(k);
  const unsigned = (claims: Record<string, unknown>) => `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'logout+jwt' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
  const hs = new TextEncoder().encode(s.idp.clientSecret.padEnd(32, 'x'));

  const bad: Array<[string, string]> = [
    ['signed by another key', await sign(base(), other)],
    ['alg none', unsigned(base())],
    ['HS256 with the client secret', await new SignJWT(base()).setProtectedHeader({ alg: 'HS256' }).sign(hs)],
    ['wrong audience', await sign({ ...base(), aud: 'someone-else' })],
    ['wrong issuer', await sign({ ...base(), iss: 'https://evil.example' })],
    ['no events claim', await sign({ ...base(), events: undefined })],
    ['events without the logout event', await sign({ ...base(), events: { 'http://example.com/other': {} } })],
    ['a nonce', await sign({ ...base(), nonce: 'abc' })],
    ['neither sid nor sub', await sign({ ...base(), sub: undefined })],
    ['no jti', await sign({ ...base(), jti: undefined })],
    ['issued an hour ago', await sign({ ...base(), iat: now - 3600 })],
    ['garbage', 'not.a.jwt'],
  ];
  for (const [what, token] of bad) {
    const r = await postLogoutToken(s.url, token);
    assert.equal(r.status, 400, what);
    assert.equal(await status(`${s.url}/x`, jar), 200, `session survives: ${what}`);
  }
  assert.equal((await postLogoutToken(s.url, '')).status, 400);

  // A valid one works once; its replay is refused.
  const good = await sign(base());
  assert.equal((await postLogoutToken(s.url, good)).status, 200);
  assert.equal(await status(`${s.url}/x`, jar), 401, 'sub-wide logout ended the session');
  assert.equal((await postLogoutToken(s.url, good)).status, 400, 'replayed jti');
});
