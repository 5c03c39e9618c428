// Attack: getting past a route's step-up (routes[].stepUp) without the sign-in it asks for — an IdP
// that answers with an acr it was not asked for (a user choosing a weaker method at the dev IdP; a
// rogue IdP ignoring acr_values), an ID token without auth_time or with a stale or future one when
// max_age was sent, a session from before step-up existed (no acr at all), a bearer token lacking
// the claims, another user finishing the step-up sign-in (identities never merge), and the doorways
// that must never redirect (forward-auth, WebSocket upgrades).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { importJWK, SignJWT, type JWK } from 'jose';
import { request } from 'undici';
import { startStack } from '../helpers/stack.js';
import { startRogueStack } from '../helpers/rogue-stack.js';
import { startTwoProviders } from '../helpers/providers.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';
import { upgrade } from '../helpers/raw-http.js';
import type { CleanupScope } from '../helpers/idp.js';
import { ALICE, STEP_UP_ROUTES, sessionOf, signInWeakly, startStepUpStack } from '../helpers/step-up.js';

/** The page's main text (no head, no tags). */
const pageText = (html: string) => html.replace(/<head>[\s\S]*<\/head>/, '').replace(/<[^>]+>/g, ' ').replace(/&quot;/g, '"').replace(/\s+/g, ' ');

test('the IdP answers with an acr it was not asked for: refused with a page naming it and what was needed; the session stays as it was', async (t) => {
  // An IdP that takes acr_values as a wish only (no claims parameter, so no essential acr): it
  // answers from its SSO session, at the weaker level the user signed in with before.
  const s = await startStepUpStack(t, { idp: { claimsParameter: false } });
  const { jar, session: before } = await signInWeakly(s);
  const upstreamBefore = s.upstream.requests.length;
  const r = await followRedirects(`${s.url}/console`, jar);
  assert.ok(r.hops.some((h) => h.url.startsWith(`${s.idp.issuer}/auth?`) && new URL(h.url).searchParams.get('acr_values') === 'phr mfa'), 'acr_values were sent');
  assert.ok(!r.hops.some((h) => h.url.includes('/interaction/')), 'the IdP did not ask the user again');
  assert.equal(r.status, 401);
  assert.ok(r.finalUrl.startsWith(`${s.url}/oauth2/callback`));
  const text = pageText(r.body);
  assert.match(text, /ERR_CALLBACK_ACR_NOT_REQUESTED/);
  assert.match(text, /signed in with authentication level "pwd", and one of "phr", "mfa" is needed/);
  assert.match(r.body, /Sign in again/);
  const after = await sessionOf(s, jar);
  assert.equal(after?.sid, before.sid);
  assert.equal(after?.claims.acr, 'pwd', 'the refused sign-in changed nothing');
  assert.equal(s.upstream.requests.length, upstreamBefore, 'the step-up route was never served');
  const again = await followRedirects(`${s.url}/console`, jar, { stopAt: (u) => u.origin === s.idp.issuer });
  assert.equal(again.stopped, true, 'the step-up route still asks for the step-up');
});

/** Proxy + upstream in front of the rogue IdP, with step-up routes. */
async function rogueStack(t: CleanupScope, now?: () => number) {
  const { rogue, upstream, server, url, logs } = await startRogueStack(t, {
    now,
    routes: (upstream) => [
      { name: 'console', match: { path: '/console' }, upstream, stepUp: { acr: ['mfa'] } },
      { name: 'recent', match: { path: '/recent' }, upstream, stepUp: { maxAge: '10m' } },
      { name: 'app', match: { path: '/' }, upstream },
    ],
    edit: (raw) => { raw.rateLimit = { signIn: 0 }; },
  });
  /** A browser (with no session, unless `jar` has one) opens `path`; the rogue IdP answers at once with its next ID token. */
  const visit = async (path: string, jar = new CookieJar()) => {
    const before = upstream.requests.length;
    const res = await followRedirects(`${url}${path}`, jar);
    return { res, text: pageText(res.body), served: upstream.requests.length - before, session: jar.get('portcullis', url) };
  };
  const sessionOf = async (jar: CookieJar) => {
    const lookup = await server.runtime.sessions.lookup({ portcullis: jar.get('portcullis', url) });
    return lookup.kind === 'valid' ? lookup.session : undefined;
  };
  return { rogue, upstream, url, visit, sessionOf, logs };
}

test('a rogue IdP: an acr ignored or missing, and an auth_time missing, stale or in the future when max_age was sent, are all refused', async (t) => {
  const s = await rogueStack(t);
  const now = () => Math.floor(Date.now() / 1000);

  // The set-up works: what was asked for is accepted.
  s.rogue.idTokenClaims = { acr: 'mfa' };
  let v = await s.visit('/console');
  assert.equal(v.res.status, 200, v.text.slice(0, 300));
  assert.equal(s.rogue.authorizeRequests.at(-1)!.get('acr_values'), 'mfa');
  s.rogue.idTokenClaims = { auth_time: now() - 60 };
  v = await s.visit('/recent');
  assert.equal(v.res.status, 200, v.text.slice(0, 300));
  assert.equal(s.rogue.authorizeRequests.at(-1)!.get('max_age'), '600');

  const refused: Array<[string, string, Record<string, unknown>, RegExp, RegExp]> = [
    ['acr_values ignored: a weaker acr', '/console', { acr: 'pwd' }, /ERR_CALLBACK_ACR_NOT_REQUESTED/, /authentication level "pwd", and "mfa" is needed/],
    ['no acr at all', '/console', { acr: undefined }, /ERR_CALLBACK_ACR_NOT_REQUESTED/, /authentication level none/],
    ['an acr that differs only in case', '/console', { acr: 'MFA' }, /ERR_CALLBACK_ACR_NOT_REQUESTED/, /"MFA"/],
    ['a non-string acr', '/console', { acr: ['mfa'] }, /ERR_CALLBACK_ACR_NOT_REQUESTED/, /level none/],
    ['auth_time missing although max_age was sent', '/recent', { auth_time: undefined }, /ERR_CALLBACK_AUTH_TIME_INVALID/, /did not say when you signed in/],
    ['a stale auth_time (an hour ago, max_age 10 minutes)', '/recent', { auth_time: now() - 3600 }, /ERR_CALLBACK_AUTH_TIME_INVALID/, /more than 10 minutes ago/],
    ['auth_time just past max_age + clock tolerance', '/recent', { auth_time: now() - 600 - 30 - 5 }, /ERR_CALLBACK_AUTH_TIME_INVALID/, /more than 10 minutes ago/],
    ['auth_time in the future', '/recent', { auth_time: now() + 3600 }, /ERR_CALLBACK_AUTH_TIME_INVALID/, /in the future/],
    ['auth_time as a string', '/recent', { auth_time: String(now()) }, /ERR_CALLBACK_ID_TOKEN_INVALID|ERR_CALLBACK_AUTH_TIME_INVALID/, /./],
  ];
  for (const [what, path, claims, code, words] of refused) {
    s.rogue.idTokenClaims = claims;
    v = await s.visit(path);
    assert.equal(v.res.status, 401, `${what}: ${v.text.slice(0, 300)}`);
    assert.match(v.text, code, what);
    assert.match(v.text, words, what);
    assert.equal(v.served, 0, `${what}: nothing reached the upstream`);
    assert.equal(v.session, undefined, `${what}: no session was created`);
  }
});

test('a session from before step-up (no acr, no auth_time in its claims) gets no free pass: redirected to step up, or 401 for an API call', async (t) => {
  // The dev IdP without acr values: its ID tokens carry neither acr nor auth_time.
  const s = await startStack(t, { routes: STEP_UP_ROUTES });
  const jar = (await loginViaHttp(`${s.url}/home`, ALICE)).jar;
  const session = await sessionOf(s, jar);
  assert.equal(session?.claims.acr, undefined);
  assert.equal(session?.claims.auth_time, undefined);
  for (const [path, param] of [['/console', 'acr_values'], ['/recent', 'max_age']] as const) {
    const nav = await followRedirects(`${s.url}${path}`, jar, { stopAt: (u) => u.origin === s.idp.issuer });
    assert.equal(nav.stopped, true, `${path}: sent to the IdP`);
    assert.notEqual(new URL(nav.finalUrl).searchParams.get(param), null, `${path}: asks for ${param}`);
    const api = await request(`${s.url}${path}/x`, { headers: { cookie: jar.header(s.url), accept: 'application/json' } });
    await api.body.dump();
    assert.equal(api.statusCode, 401, `${path}: an API call is refused`);
  }
  const recent = await followRedirects(`${s.url}/recent`, jar, { stopAt: (u) => u.origin === s.idp.issuer });
  assert.equal(new URL(recent.finalUrl).searchParams.get('prompt'), 'login', 'no auth_time counts as too old');
});

test('another user finishing the step-up sign-in gets a session of their own: identities are never merged', async (t) => {
  const s = await rogueStack(t);
  const jar = new CookieJar();
  s.rogue.idTokenClaims = { acr: 'pwd' };
  await s.visit('/home', jar);
  const first = await s.sessionOf(jar);
  assert.equal(first?.sub, 'rogue-user');
  // The step-up sign-in comes back for another subject, at the acr asked for.
  s.rogue.idTokenClaims = { acr: 'mfa', sub: 'someone-else', email: 'someone-else@example.com' };
  const v = await s.visit('/console', jar);
  assert.equal(v.res.status, 200, v.text.slice(0, 300));
  const now = await s.sessionOf(jar);
  assert.equal(now?.sub, 'someone-else');
  assert.notEqual(now?.sid, first!.sid, 'a new session id for another subject');
  assert.equal(now?.createdAt !== undefined && now.createdAt >= first!.createdAt, true);
  // Same subject again: the session is upgraded in place (the same id).
  s.rogue.idTokenClaims = { acr: 'mfa', sub: 'someone-else' };
  await s.visit('/oauth2/start?step_up=console', jar);
  assert.equal((await s.sessionOf(jar))?.sid, now!.sid);
});

test('forward-auth and WebSocket upgrades answer a step-up with 401 and the challenge, never a redirect; upgraded, both let the user through', async (t) => {
  const s = await startStepUpStack(t, { edit: (raw) => { raw.trustProxy = ['127.0.0.1', '::1']; } });
  const { jar } = await signInWeakly(s);
  const fa = async () => {
    const r = await request(`${s.url}/oauth2/auth`, { headers: { cookie: jar.header(s.url), accept: 'text/html', 'x-forwarded-method': 'GET', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'apps.example.com', 'x-forwarded-uri': '/console/x' } });
    return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
  };
  const denied = await fa();
  assert.equal(denied.status, 401);
  assert.equal(denied.headers.location, undefined);
  const signIn = `${s.url}/oauth2/start?step_up=console&rd=${encodeURIComponent('https://apps.example.com/console/x')}`;
  assert.equal(denied.headers['www-authenticate'], `OIDC realm="portcullis", error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="phr mfa", sign_in_url="${signIn}"`);
  assert.equal(JSON.parse(denied.body).signInUrl, signIn);
  assert.equal(denied.headers['x-forwarded-user'], undefined, 'no identity for the fronting proxy to pass on');

  const ws = await upgrade(s.url, '/console/ws', jar.header(s.url));
  assert.equal(ws.status, 401);
  assert.match(ws.head, /www-authenticate: OIDC realm="portcullis", error="insufficient_user_authentication"/i);
  assert.doesNotMatch(ws.head, /location:/i);
  assert.equal(JSON.parse(ws.body).error, 'insufficient_user_authentication');

  // Stepped up (the sign-in URL forward-auth gave, as the fronting proxy would send the browser):
  // both doorways let the same session through.
  const up = await loginViaHttp(`${s.url}/oauth2/start?step_up=console&rd=%2Fconsole`, { ...ALICE, jar });
  assert.equal(up.finalUrl, `${s.url}/console`);
  const ok = await fa();
  assert.equal(ok.status, 202);
  assert.equal(ok.headers['x-forwarded-user'], 'alice');
  const ws2 = await upgrade(s.url, '/console/ws', jar.header(s.url));
  assert.equal(ws2.status, 101, ws2.head);
});

test('bearer tokens on a step-up route: a token without the acr or with a stale auth_time gets RFC 9470\'s Bearer challenge; one that has them passes', async (t) => {
  const jwk = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'idp-key', alg: 'RS256', use: 'sig' } as JWK;
  const s = await startStack(t, {
    idp: { keys: { keys: [jwk] } },
    routes: [
      { name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true, stepUp: { acr: ['mfa', 'phr'], maxAge: '5m' } },
      { name: 'app', match: { path: '/' }, upstream: '{upstream}' },
    ],
    edit: (raw) => { (raw.oidc as Record<string, unknown>).bearerAudiences = ['urn:api']; },
  });
  const key = await importJWK(jwk, 'RS256');
  const now = Math.floor(Date.now() / 1000);
  const token = (over: Record<string, unknown>) => new SignJWT({ iss: s.idp.issuer, aud: 'urn:api', sub: 'svc', iat: now, exp: now + 300, ...over }).setProtectedHeader({ alg: 'RS256', kid: 'idp-key', typ: 'at+jwt' }).sign(key);
  const call = async (t: string) => {
    const r = await request(`${s.url}/api/x`, { headers: { authorization: `Bearer ${t}`, accept: 'text/html' } });
    return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
  };
  const ok = await call(await token({ acr: 'phr', auth_time: now - 60 }));
  assert.equal(ok.status, 200);

  const noAcr = await call(await token({ auth_time: now - 60 }));
  assert.equal(noAcr.status, 401);
  assert.equal(noAcr.headers['www-authenticate'], 'Bearer realm="portcullis", error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="mfa phr", max_age="300"');
  const body = JSON.parse(noAcr.body);
  assert.equal(body.error, 'insufficient_user_authentication', 'JSON for an API client, whatever it accepts');
  assert.equal(body.signInUrl, undefined, 'no sign-in URL for a bearer token');

  const stale = await call(await token({ acr: 'mfa', auth_time: now - 3600 }));
  assert.equal(stale.status, 401);
  assert.equal(stale.headers['www-authenticate'], 'Bearer realm="portcullis", error="insufficient_user_authentication", error_description="More recent authentication is required", acr_values="mfa phr", max_age="300"');
  const noTime = await call(await token({ acr: 'mfa' }));
  assert.equal(noTime.status, 401);
  assert.equal(s.upstream.requests.filter((q) => q.url.startsWith('/api')).length, 1, 'only the token that had both reached the upstream');
});

test('several providers: a session steps up at the provider it signed in with, never through the chooser (another provider would be another identity)', async (t) => {
  const s = await startTwoProviders(t, {
    edit: (raw) => { (raw.routes as Array<Record<string, unknown>>).unshift({ name: 'recent', match: { path: '/recent' }, upstream: upstreamOf(raw), stepUp: { maxAge: '10m' } }); },
  });
  const jar = (await loginViaHttp(`${s.url}/oauth2/start?provider=partners&rd=${encodeURIComponent('/both/')}`, { ...ALICE })).jar;
  const nav = await followRedirects(`${s.url}/recent`, jar, { stopAt: (u) => u.origin === s.partners.issuer || u.origin === s.corp.issuer || u.pathname === '/oauth2/start' });
  assert.equal(nav.stopped, true);
  assert.equal(new URL(nav.finalUrl).origin, s.partners.issuer, `straight to the session's own IdP (${nav.finalUrl})`);
  assert.equal(new URL(nav.finalUrl).searchParams.get('max_age'), '600');
  const api = await request(`${s.url}/recent/x`, { headers: { cookie: jar.header(s.url), accept: 'application/json' } });
  assert.equal(api.statusCode, 401);
  assert.match(String(api.headers['www-authenticate']), new RegExp(`sign_in_url="${s.url}/oauth2/start\\?step_up=recent&provider=partners"`));
  await api.body.dump();
});

/** The upstream URL the helper's own routes use. */
function upstreamOf(raw: Record<string, unknown>): string {
  return String((raw.routes as Array<Record<string, unknown>>)[0]!.upstream);
}

test('a refresh whose ID token leaves out acr and auth_time keeps the session\'s (they describe the original sign-in): no step-up after every refresh', async (t) => {
  let offset = 0;
  const s = await rogueStack(t, () => Date.now() + offset);
  const jar = new CookieJar();
  const signedInAt = Math.floor(Date.now() / 1000);
  s.rogue.idTokenClaims = { acr: 'mfa', auth_time: signedInAt };
  assert.equal((await s.visit('/console', jar)).res.status, 200);
  s.rogue.idTokenClaims = {};
  offset = 9.5 * 60_000; // the tokens (10 minutes) are within their refresh margin (the last minute)
  const v = await s.visit('/console', jar);
  assert.equal(s.rogue.refreshes, 1, 'refreshed');
  assert.equal(v.res.status, 200, v.text.slice(0, 200));
  assert.deepEqual(v.res.hops.map((h) => h.status), [200], 'no trip to the IdP');
  const session = await s.sessionOf(jar);
  assert.equal(session?.claims.acr, 'mfa');
  assert.equal(session?.claims.auth_time, signedInAt);
});
