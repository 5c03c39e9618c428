// Attack: an ID token that must not be believed — forged, unsigned, signed with the client secret,
// for another issuer or audience, replayed under another nonce, expired, from the future, signed by a
// stranger's key — and a discovery document that names another issuer. A misbehaving test IdP
// (test/helpers/rogue-idp.ts) produces each one; a valid token proves the set-up itself works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import type { RogueMode } from '../helpers/rogue-idp.js';
import { startRogueStack, type RogueStack } from '../helpers/rogue-stack.js';
import { CookieJar, followRedirects } from '../helpers/browserless-login.js';
import { until } from '../helpers/wait.js';
import { NAVIGATION, issuedCookieNames } from './support.js';

/** A browser opens a protected page; the rogue IdP answers at once with a token made in `mode`. */
async function attempt(s: RogueStack, mode: RogueMode) {
  s.rogue.mode = mode;
  const jar = new CookieJar();
  const upstreamBefore = s.upstream.requests.length;
  const issuedBefore = s.rogue.issued.length;
  const r = await followRedirects(`${s.url}/protected?m=${mode}`, jar);
  const callbackHops = r.hops.filter((h) => h.url.startsWith(`${s.url}/oauth2/callback`));
  return {
    r,
    jar,
    reachedCallback: callbackHops.length === 1,
    tokenRequested: s.rogue.issued.length === issuedBefore + 1,
    upstream: s.upstream.requests.slice(upstreamBefore),
  };
}

const REJECTED: Array<[RogueMode, string]> = [
  ['tampered-payload', 'payload changed after signing (bad signature)'],
  ['corrupt-signature', 'signature bytes altered'],
  ['alg-none', 'alg: none, although discovery advertises none'],
  ['hs256-client-secret', 'HS256 signed with the client secret'],
  ['wrong-iss', 'another issuer'],
  ['wrong-aud', 'another audience'],
  ['aud-extra-no-azp', 'an extra untrusted audience and no azp'],
  ['wrong-azp', 'azp names another client'],
  ['wrong-nonce', 'a nonce from another sign-in'],
  ['missing-nonce', 'no nonce'],
  ['missing-sub', 'no subject'],
  ['expired', 'exp two minutes ago (beyond the 30 s tolerance)'],
  ['iat-future', 'issued an hour in the future'],
  ['unknown-key', 'signed by a key not in the JWKS'],
  ['unknown-key-same-kid', "signed by a stranger's key under the JWKS key's kid"],
  ['no-id-token', 'no ID token in the token response'],
];

test('the control: a valid ID token from the rogue IdP signs the user in', async (t) => {
  const s = await startRogueStack(t);
  for (const mode of ['valid', 'exp-within-tolerance'] as const) {
    const a = await attempt(s, mode);
    assert.ok(a.reachedCallback && a.tokenRequested, `${mode}: the flow went through the token endpoint`);
    assert.equal(a.r.status, 200, `${mode}: ${a.r.body.slice(0, 300)}`);
    assert.equal(a.r.finalUrl, `${s.url}/protected?m=${mode}`);
    assert.ok(a.jar.get('portcullis', s.url), `${mode}: session issued`);
    assert.equal(a.upstream.length, 1);
    assert.equal(a.upstream[0]!.headers['x-forwarded-user'], 'rogue-user');
    assert.equal(a.upstream[0]!.headers['x-forwarded-email'], 'rogue-user@example.com');
  }
});

test('ID tokens that must not be believed are rejected: 4xx page, no session, upstream never reached', async (t) => {
  const s = await startRogueStack(t);
  for (const [mode, what] of REJECTED) {
    await t.test(`${mode}: ${what}`, async () => {
      const logsBefore = s.logs.length;
      const a = await attempt(s, mode);
      assert.ok(a.reachedCallback, 'the IdP redirected back to the callback');
      assert.ok(a.tokenRequested, 'the proxy redeemed the code');
      assert.equal(new URL(a.r.finalUrl).pathname, '/oauth2/callback', `stays at the callback (hops ${JSON.stringify(a.r.hops)})`);
      assert.ok([400, 401].includes(a.r.status), `a 400/401 page, got ${a.r.status}: ${a.r.body.slice(0, 300)}`);
      assert.match(String(a.r.headers['content-type']), /text\/html/);
      assert.match(a.r.body, /Sign in again/);
      assert.ok(!issuedCookieNames(a.r.headers).includes('portcullis'), 'no session cookie in the response');
      assert.equal(a.jar.get('portcullis', s.url), undefined, 'no session cookie in the browser');
      assert.equal(a.upstream.length, 0, 'the upstream was never reached');
      // Rejected for the right reason: the ID token check, not some unrelated failure.
      const codes = s.logs.slice(logsBefore).map((l) => (JSON.parse(l) as { code?: string }).code).filter(Boolean);
      assert.ok(codes.includes('ERR_CALLBACK_ID_TOKEN_INVALID'), `logged codes: ${codes.join(', ')}`);
      // Nothing the browser now holds opens the door.
      const after = await request(`${s.url}/protected`, { headers: { accept: 'application/json', cookie: a.jar.header(s.url) } });
      await after.body.dump();
      assert.equal(after.statusCode, 401);
      // The token itself never lands in the log.
      const token = s.rogue.issued.at(-1)?.idToken;
      if (token) assert.ok(!s.logs.some((l) => l.includes(token.split('.')[1]!)), 'ID token not logged');
    });
  }
  assert.equal(s.upstream.requests.length, 0, 'no rejected sign-in ever reached the upstream');
  // The same stack still signs in a valid token afterwards: the rejections were about the tokens.
  const ok = await attempt(s, 'valid');
  assert.equal(ok.r.status, 200);
  assert.equal(ok.upstream[0]?.headers['x-forwarded-user'], 'rogue-user');
});

test('an ID token with alg: none is refused even when discovery advertises only none', async (t) => {
  const s = await startRogueStack(t, { rogue: { advertisedAlgs: ['none'] } });
  const a = await attempt(s, 'alg-none');
  assert.ok(a.r.status >= 400 && a.r.status < 500, `got ${a.r.status}`);
  assert.equal(a.jar.get('portcullis', s.url), undefined);
  assert.equal(a.upstream.length, 0);
});

test('a discovery document naming another issuer: never ready, sign-in answers 503', async (t) => {
  const s = await startRogueStack(t, {
    rogue: { discoveryIssuer: (real) => `${real}/other-realm` },
    waitReady: false,
  });
  // Wait until discovery was actually tried (and refused), not merely pending.
  const t0 = Date.now();
  while (!s.rogue.hits.includes('/.well-known/openid-configuration') || s.server.runtime.providers.first.idp.lastError === undefined) {
    assert.ok(Date.now() - t0 < 5000, 'discovery was attempted');
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(s.server.runtime.providers.first.idp.ready, false);
  const ready = await request(`${s.url}/readyz`);
  const readyBody = await ready.body.text();
  assert.equal(ready.statusCode, 503, readyBody);

  const nav = await request(`${s.url}/protected`, { headers: NAVIGATION });
  const navBody = await nav.body.text();
  assert.equal(nav.statusCode, 503, navBody.slice(0, 300));
  assert.equal(nav.headers.location, undefined, 'no redirect to an IdP we do not trust');
  const start = await request(`${s.url}/oauth2/start`, { headers: NAVIGATION });
  await start.body.dump();
  assert.equal(start.statusCode, 503);
  assert.ok(!s.rogue.hits.includes('/authorize') && !s.rogue.hits.includes('/token'), 'the untrusted IdP was never used for a sign-in');
  assert.equal(s.upstream.requests.length, 0);

  // Still not ready after the retry loop's next attempt (refused again).
  const attempts = () => s.rogue.hits.filter((h) => h === '/.well-known/openid-configuration').length;
  const tried = attempts();
  await until('another discovery attempt', 10_000, () => attempts() > tried);
  const again = await request(`${s.url}/readyz`);
  await again.body.dump();
  assert.equal(again.statusCode, 503);
});
