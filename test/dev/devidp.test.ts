// The embedded dev OpenID Provider: discovery, code flow with PKCE, the login form, logout — driven over plain HTTP.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { calculateJwkThumbprint, createRemoteJWKSet, decodeJwt, jwtVerify, type JWK } from 'jose';
import * as oidc from 'openid-client';
import { request } from 'undici';
import { CookieJar, followRedirects, loginViaHttp, parseForms } from '../helpers/browserless-login.js';
import { launchChromium } from '../helpers/chromium.js';
import { startTestIdp, type TestIdp } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';

// Nothing listens here: the helpers stop before requesting it and we read the code off the URL.
const REDIRECT_URI = 'http://127.0.0.1:9/oauth2/callback';

async function clientFor(idp: TestIdp): Promise<oidc.Configuration> {
  return oidc.discovery(new URL(idp.issuer), idp.clientId, undefined, oidc.ClientSecretBasic(idp.clientSecret), {
    execute: [oidc.allowInsecureRequests],
  });
}

async function startSignIn(config: oidc.Configuration, extra: Record<string, string> = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid email profile groups',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url, verifier, state, nonce };
}

test('discovery document advertises code flow, S256 only, logout features and thumbprint kids', async (t) => {
  const idp = await startTestIdp(t, { redirectUris: [REDIRECT_URI] });
  assert.match(idp.issuer, /^http:\/\/127\.0\.0\.1:\d+$/);
  const res = await request(`${idp.issuer}/.well-known/openid-configuration`);
  assert.equal(res.statusCode, 200);
  const doc = (await res.body.json()) as Record<string, unknown>;
  assert.equal(doc.issuer, idp.issuer);
  assert.deepEqual(doc.response_types_supported, ['code']);
  assert.deepEqual(doc.code_challenge_methods_supported, ['S256']);
  assert.equal(doc.end_session_endpoint, `${idp.issuer}/session/end`);
  assert.equal(doc.backchannel_logout_supported, true);
  assert.equal(doc.backchannel_logout_session_supported, true);
  assert.ok(doc.revocation_endpoint && doc.introspection_endpoint);
  for (const scope of ['openid', 'email', 'profile', 'groups']) assert.ok((doc.scopes_supported as string[]).includes(scope), scope);

  const jwks = (await (await request(doc.jwks_uri as string)).body.json()) as { keys: JWK[] };
  assert.deepEqual(jwks.keys.map((k) => k.alg).sort(), ['ES256', 'RS256']);
  for (const key of jwks.keys) {
    assert.equal(key.d, undefined, 'private part must not be published');
    assert.equal(key.kid, await calculateJwkThumbprint(key));
  }
});

test('code flow with PKCE signs alice in; the ID token carries her groups and email', async (t) => {
  const idp = await startTestIdp(t, { redirectUris: [REDIRECT_URI] });
  const config = await clientFor(idp);
  const signIn = await startSignIn(config);

  const jar = new CookieJar();
  const login = await loginViaHttp(signIn.url.href, { user: 'alice', password: 'alice-password', jar, stopAt: REDIRECT_URI });
  assert.ok(login.finalUrl.startsWith(`${REDIRECT_URI}?`), login.finalUrl);
  assert.ok(new URL(login.finalUrl).searchParams.get('code'));
  // authorize → interaction form → login POST → resume → redirect_uri: no consent page on the way.
  assert.deepEqual(login.hops.map((h) => h.status), [303, 200, 303, 303]);
  assert.ok(jar.get('op_session', idp.issuer), 'the IdP session cookie is set');

  const tokens = await oidc.authorizationCodeGrant(config, new URL(login.finalUrl), {
    pkceCodeVerifier: signIn.verifier,
    expectedState: signIn.state,
    expectedNonce: signIn.nonce,
  });
  const claims = tokens.claims()!;
  assert.equal(claims.sub, 'alice');
  assert.deepEqual(claims.groups, ['admin', 'dev']);
  assert.equal(claims.email, 'alice@example.com');
  assert.equal(claims.email_verified, true);
  assert.equal(claims.name, 'Alice Example');
  assert.equal(claims.preferred_username, 'alice');
  assert.ok(tokens.refresh_token, 'a refresh token without offline_access');

  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
  assert.deepEqual(refreshed.claims()?.groups, ['admin', 'dev']);
});

test('a second sign-in in the same browser is single sign-on, and bob has no groups', async (t) => {
  const idp = await startTestIdp(t, { redirectUris: [REDIRECT_URI] });
  const config = await clientFor(idp);
  const jar = new CookieJar();

  const first = await startSignIn(config);
  await loginViaHttp(first.url.href, { user: 'bob', password: 'bob-password', jar, stopAt: REDIRECT_URI });
  const second = await startSignIn(config);
  const sso = await followRedirects(second.url, jar, { stopAt: REDIRECT_URI });
  assert.equal(sso.stopped, true);
  assert.equal(sso.hops.length, 1, 'straight back with a code, no form');

  const tokens = await oidc.authorizationCodeGrant(config, new URL(sso.finalUrl), {
    pkceCodeVerifier: second.verifier,
    expectedState: second.state,
    expectedNonce: second.nonce,
  });
  assert.equal(tokens.claims()?.sub, 'bob');
  assert.deepEqual(tokens.claims()?.groups, []);
});

test('a wrong password shows the form again with an escaped error and issues no code', async (t) => {
  const idp = await startTestIdp(t, { redirectUris: [REDIRECT_URI] });
  const signIn = await startSignIn(await clientFor(idp));
  const login = await loginViaHttp(signIn.url.href, { user: 'alice"><script>x</script>', password: 'nope', stopAt: REDIRECT_URI });
  assert.equal(login.status, 200);
  assert.ok(login.finalUrl.startsWith(`${idp.issuer}/interaction/`));
  assert.match(login.body, /Invalid username or password/);
  assert.match(login.body, /<title>[^<]*Portcullis dev IdP<\/title>/);
  assert.doesNotMatch(login.body, /<script>/);
  assert.match(login.body, /value="alice&#34;&#62;&#60;script&#62;/);
  assert.ok(parseForms(login.body, login.finalUrl).some((f) => f.fields.has('login')), 'the form is back');

  const retry = await loginViaHttp(login.finalUrl, { user: 'alice', password: 'alice-password', jar: login.jar, stopAt: REDIRECT_URI });
  assert.ok(new URL(retry.finalUrl).searchParams.get('code'), 'the same attempt still succeeds');
});

test('an authorization request without PKCE is refused', async (t) => {
  const idp = await startTestIdp(t, { redirectUris: [REDIRECT_URI] });
  const config = await clientFor(idp);
  const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT_URI, scope: 'openid', state: 'st', nonce: 'n' });
  const res = await followRedirects(url, new CookieJar(), { stopAt: REDIRECT_URI });
  assert.equal(res.stopped, true);
  const params = new URL(res.finalUrl).searchParams;
  assert.equal(params.get('code'), null);
  assert.equal(params.get('error'), 'invalid_request');
  assert.match(params.get('error_description') ?? '', /PKCE/);
  assert.equal(params.get('state'), 'st');
});

test('cancel at the IdP returns access_denied to the client', async (t) => {
  const idp = await startTestIdp(t, { redirectUris: [REDIRECT_URI] });
  const signIn = await startSignIn(await clientFor(idp));
  const jar = new CookieJar();
  const page = await followRedirects(signIn.url, jar);
  const cancel = parseForms(page.body, page.finalUrl).find((f) => f.action.pathname.endsWith('/abort'))!;
  const res = await followRedirects(cancel.action, jar, { method: 'POST', body: '', stopAt: REDIRECT_URI });
  assert.equal(new URL(res.finalUrl).searchParams.get('error'), 'access_denied');
});

test('an interaction page without its cookie is a 400, not a crash', async (t) => {
  const idp = await startTestIdp(t, { redirectUris: [REDIRECT_URI] });
  const res = await request(`${idp.issuer}/interaction/abc123`, { headers: { accept: 'text/html' } });
  assert.equal(res.statusCode, 400);
  assert.match(await res.body.text(), /expired/);
});

test('RP-initiated logout sends a back-channel logout token with sid, then returns to the client', async (t) => {
  const logoutTokens: string[] = [];
  const rp = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c; });
    req.on('end', () => {
      logoutTokens.push(new URLSearchParams(body).get('logout_token') ?? '');
      res.writeHead(200).end();
    });
  });
  rp.listen(0, '127.0.0.1');
  await once(rp, 'listening');
  t.after(() => rp.close());
  const rpBase = `http://127.0.0.1:${(rp.address() as AddressInfo).port}`;

  const idp = await startTestIdp(t, {
    redirectUris: [REDIRECT_URI],
    postLogoutRedirectUris: [`${rpBase}/signed-out`],
    backchannelLogoutUri: `${rpBase}/oauth2/backchannel_logout`,
  });
  const config = await clientFor(idp);
  const signIn = await startSignIn(config);
  const jar = new CookieJar();
  const login = await loginViaHttp(signIn.url.href, { user: 'alice', password: 'alice-password', jar, stopAt: REDIRECT_URI });
  const tokens = await oidc.authorizationCodeGrant(config, new URL(login.finalUrl), {
    pkceCodeVerifier: signIn.verifier, expectedState: signIn.state, expectedNonce: signIn.nonce,
  });
  const sid = tokens.claims()?.sid;
  assert.ok(sid, 'sid is in the ID token when the client registered a back-channel URI');

  const endUrl = oidc.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: `${rpBase}/signed-out` });
  const confirm = await followRedirects(endUrl, jar);
  assert.equal(confirm.status, 200);
  const form = parseForms(confirm.body, confirm.finalUrl)[0]!;
  assert.equal(form.fields.get('logout'), 'yes');
  const done = await followRedirects(form.action, jar, { method: form.method, body: form.fields.toString(), stopAt: `${rpBase}/signed-out` });
  assert.equal(done.stopped, true);
  assert.equal(jar.get('op_session'), undefined, 'IdP session cookie deleted');

  assert.equal(logoutTokens.length, 1);
  const logoutToken = logoutTokens[0]!;
  const { payload } = await jwtVerify(logoutToken, createRemoteJWKSet(new URL(`${idp.issuer}/jwks`)), {
    issuer: idp.issuer,
    audience: idp.clientId,
  });
  assert.equal(payload.sub, 'alice');
  assert.equal(payload.sid, sid);
  assert.ok((payload.events as Record<string, unknown>)['http://schemas.openid.net/event/backchannel-logout']);
  assert.equal(decodeJwt(logoutToken).nonce, undefined);

  await assert.rejects(oidc.refreshTokenGrant(config, tokens.refresh_token!), 'refresh tokens end with the IdP session');
});

test('registerClient changes a client after start, e.g. once the proxy knows its port', async (t) => {
  const idp = await startTestIdp(t, { redirectUris: ['http://127.0.0.1:1/placeholder'] });
  await idp.registerClient({ ...idp.client, redirect_uris: [REDIRECT_URI] });
  const signIn = await startSignIn(await clientFor(idp));
  const login = await loginViaHttp(signIn.url.href, { user: 'alice', password: 'alice-password', stopAt: REDIRECT_URI });
  assert.ok(new URL(login.finalUrl).searchParams.get('code'));
});

test('a real browser signs in through the form (SameSite=Lax IdP cookies survive plain http)', async (t) => {
  const browser = await launchChromium(t);
  if (!browser) return;
  // The echo upstream stands in for the client's callback, so the browser lands somewhere real.
  const rp = await startTestUpstream(t);
  const redirectUri = `${rp.url}/oauth2/callback`;
  const idp = await startTestIdp(t, { redirectUris: [redirectUri] });
  const config = await clientFor(idp);
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid email groups',
    code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    state: 'browser-state',
  });

  const page = await browser.newPage();
  await page.goto(url.href);
  assert.match(await page.title(), /Portcullis dev IdP/);
  await page.fill('input[name="login"]', 'alice');
  await page.fill('input[name="password"]', 'alice-password');
  await Promise.all([page.waitForURL(`${redirectUri}?**`), page.click('button:has-text("Sign in")')]);

  const landed = new URL(page.url());
  assert.ok(landed.searchParams.get('code'));
  assert.equal(landed.searchParams.get('state'), 'browser-state');
  const cookies = await browser.cookies(idp.issuer);
  assert.equal(cookies.find((c) => c.name === 'op_session')?.sameSite, 'Lax');
});
