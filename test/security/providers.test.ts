// Several OpenID Providers (issue 16): tries to cross them. Two real dev IdPs (corp, partners), both
// with a user "alice": a partners session on a corp-only route, a partners code or `iss` at a sign-in
// started at corp, bearer tokens from the wrong or an unconfigured issuer, a partners back-channel
// logout for "alice" — and the config checks that keep ids and issuers apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { SignJWT, importJWK, type JWK } from 'jose';
import { request } from 'undici';
import { startTwoProviders, type TwoProviders } from '../helpers/providers.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';
import { validateConfigObject } from '../../src/config/index.js';
import { upgrade } from '../helpers/raw-http.js';

const ALICE = { user: 'alice', password: 'alice-password' };
const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} };

function key(kid: string): JWK {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as JWK;
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

/** A GET as an API client (JSON) or as a navigating browser. */
async function get(url: string, jar: CookieJar, browser = false, headers: Record<string, string> = {}) {
  const r = await request(url, {
    headers: {
      cookie: jar.header(url),
      ...(browser ? { accept: 'text/html', 'sec-fetch-mode': 'navigate' } : { accept: 'application/json' }),
      ...headers,
    },
  });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

/** Signs in as alice at one provider (straight, `?provider=`), coming back to `rd`. */
async function signIn(s: TwoProviders, provider: 'corp' | 'partners', jar = new CookieJar(), rd = '/both/') {
  const r = await loginViaHttp(`${s.url}/oauth2/start?provider=${provider}&rd=${encodeURIComponent(rd)}`, { ...ALICE, jar });
  assert.equal(r.status, 200, `signed in at ${provider}`);
  return jar;
}

const sessionCookieCleared = (setCookie: unknown) => [setCookie ?? []].flat().some((c) => /^portcullis=;/.test(String(c)) || /^portcullis=[^;]*;.*Max-Age=0/i.test(String(c)));

test('a partners session is no session on a corp-only route: 401 for APIs, sign-in at corp for browsers, cookie kept; a new sign-in replaces it', async (t) => {
  const s = await startTwoProviders(t);
  const jar = await signIn(s, 'partners');

  const both = await get(`${s.url}/both/x`, jar);
  assert.equal(both.status, 200, 'a route for both providers serves the partners session');
  assert.equal(JSON.parse(both.body).headers['x-forwarded-user'], 'alice');

  const api = await get(`${s.url}/corp/x`, jar);
  assert.equal(api.status, 401, 'corp-only route: not signed in for it');
  assert.equal(JSON.parse(api.body).error, 'unauthenticated');
  assert.ok(!sessionCookieCleared(api.headers['set-cookie']), 'the session cookie is not cleared');

  const nav = await get(`${s.url}/corp/x`, jar, true);
  assert.equal(nav.status, 302);
  assert.equal(new URL(String(nav.headers.location)).origin, s.corp.issuer, 'straight to corp\'s IdP, no chooser');
  assert.ok(!sessionCookieCleared(nav.headers['set-cookie']));
  assert.equal((await get(`${s.url}/both/x`, jar)).status, 200, 'still signed in where partners is accepted');

  // A rule testing the provider: partners' alice is not corp's alice.
  assert.equal((await get(`${s.url}/corp-rule/x`, jar)).status, 403);

  // Signing in at corp replaces the partners session (never merged).
  await signIn(s, 'corp', jar, '/corp/x');
  const corp = await get(`${s.url}/corp/x`, jar);
  assert.equal(corp.status, 200);
  assert.equal((await get(`${s.url}/corp-rule/x`, jar)).status, 200);
  assert.equal((await get(`${s.url}/partners/x`, jar)).status, 401, 'the partners session is gone');

  const metrics = await (await request(`${s.server.metricsUrl}/metrics`)).body.text();
  assert.match(metrics, /^portcullis_logins_total\{result="success",provider="partners"\} 1$/m);
  assert.match(metrics, /^portcullis_logins_total\{result="success",provider="corp"\} 1$/m);
  assert.match(metrics, /^portcullis_auth_decisions_total\{route="both",decision="allow",provider="partners"\} \d+$/m);
  const audit = s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit === true && l.route === 'corp' && l.decision === 'allow');
  assert.ok(audit.length > 0 && audit.every((l) => l.provider === 'corp'), 'audit lines name the provider');
});

test('every doorway keeps providers apart: forward-auth and WebSocket upgrades refuse a partners session on a corp-only route and pass it where partners is accepted', async (t) => {
  const s = await startTwoProviders(t, {
    edit: (raw) => {
      raw.trustProxy = ['127.0.0.1', '::1'];
      for (const r of raw.routes as Array<Record<string, unknown>>) if (r.name === 'corp' || r.name === 'both') r.websocket = true;
    },
  });
  const jar = await signIn(s, 'partners');
  const forwardAuth = async (uri: string) => {
    const r = await request(`${s.url}/oauth2/auth`, { headers: { cookie: jar.header(s.url), accept: 'application/json', 'x-forwarded-method': 'GET', 'x-forwarded-proto': 'http', 'x-forwarded-host': new URL(s.url).host, 'x-forwarded-uri': uri } });
    return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
  };
  const corp = await forwardAuth('/corp/x');
  assert.equal(corp.status, 401, 'forward-auth: not signed in for a corp-only route');
  assert.equal(corp.headers['x-forwarded-user'], undefined, 'no identity for the fronting proxy to pass on');
  const both = await forwardAuth('/both/x');
  assert.equal(both.status, 202);
  assert.equal(both.headers['x-forwarded-user'], 'alice');

  const wsCorp = await upgrade(s.url, '/corp/ws', jar.header(s.url));
  assert.equal(wsCorp.status, 401, `upgrade on a corp-only route: ${wsCorp.head}`);
  assert.doesNotMatch(wsCorp.head, /location:/i, 'an upgrade is never redirected');
  const wsBoth = await upgrade(s.url, '/both/ws', jar.header(s.url));
  assert.equal(wsBoth.status, 101, wsBoth.head);
  // None of the refused requests reached the upstream as anyone.
  assert.ok(!s.upstream.requests.some((r) => r.url.startsWith('/corp/')), 'nothing reached the upstream on the corp-only route');
});

test('a partners code, or a partners `iss`, at a sign-in started at corp is refused and signs no one in', async (t) => {
  const s = await startTwoProviders(t);
  const callback = `${s.url}/oauth2/callback`;
  // A sign-in started at corp, stopped where the IdP sends the browser back (its state is corp's).
  const corpJar = new CookieJar();
  const atCorp = await loginViaHttp(`${s.url}/oauth2/start?provider=corp&rd=/both/`, { ...ALICE, jar: corpJar, stopAt: callback });
  assert.ok(atCorp.finalUrl.startsWith(callback));
  const corpBack = new URL(atCorp.finalUrl);
  assert.equal(corpBack.searchParams.get('iss'), s.corp.issuer, 'the dev IdP sends RFC 9207 iss');
  // A real partners code (and its ID token behind it), from a partners sign-in of the same user.
  const partnersJar = new CookieJar();
  const atPartners = await loginViaHttp(`${s.url}/oauth2/start?provider=partners&rd=/both/`, { ...ALICE, jar: partnersJar, stopAt: callback });
  const partnersBack = new URL(atPartners.finalUrl);

  const attempt = async (params: Record<string, string>) => {
    const u = new URL(callback);
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
    const r = await request(u, { headers: { accept: 'application/json', cookie: corpJar.header(u) } });
    const body = await r.body.text();
    return { status: r.statusCode, body, setCookie: [r.headers['set-cookie'] ?? []].flat().map(String) };
  };
  const state = corpBack.searchParams.get('state')!;
  // partners' code with corp's state (and partners' iss, as partners sent it): refused on the iss
  // (RFC 9207, checked by openid-client against corp's issuer) before any code is redeemed.
  const swapped = await attempt({ code: partnersBack.searchParams.get('code')!, state, iss: s.partners.issuer });
  assert.equal(swapped.status, 400, swapped.body);
  assert.equal(JSON.parse(swapped.body).error, 'ERR_CALLBACK_ISSUER_MISMATCH');
  assert.ok(!swapped.setCookie.some((c) => /^portcullis=[^;]/.test(c)), 'no session cookie');
  // Without `iss` (corp's metadata says it sends one, so it is required): refused.
  const corpJar1 = new CookieJar();
  const first = await loginViaHttp(`${s.url}/oauth2/start?provider=corp&rd=/both/`, { ...ALICE, jar: corpJar1, stopAt: callback });
  const state1 = new URL(first.finalUrl).searchParams.get('state')!;
  const bare = await request(`${callback}?code=${encodeURIComponent(partnersBack.searchParams.get('code')!)}&state=${encodeURIComponent(state1)}`, { headers: { accept: 'application/json', cookie: corpJar1.header(callback) } });
  const bareBody = await bare.body.text();
  assert.equal(bare.statusCode, 400, bareBody);
  assert.equal(JSON.parse(bareBody).error, 'ERR_CALLBACK_ISSUER_MISMATCH');
  // With corp's iss: corp's token endpoint refuses a code it never issued (partners' code goes nowhere else).
  const corpJar2 = new CookieJar();
  const again = await loginViaHttp(`${s.url}/oauth2/start?provider=corp&rd=/both/`, { ...ALICE, jar: corpJar2, stopAt: callback });
  const state2 = new URL(again.finalUrl).searchParams.get('state')!;
  const noIss = await request(`${callback}?code=${encodeURIComponent(partnersBack.searchParams.get('code')!)}&state=${encodeURIComponent(state2)}&iss=${encodeURIComponent(s.corp.issuer)}`, { headers: { accept: 'application/json', cookie: corpJar2.header(callback) } });
  const noIssBody = await noIss.body.text();
  assert.equal(noIss.statusCode, 400, noIssBody);
  assert.equal(JSON.parse(noIssBody).error, 'ERR_CALLBACK_CODE_REJECTED');

  // corp's own code with partners' issuer as `iss` (RFC 9207): refused before the code is redeemed.
  const corpJar3 = new CookieJar();
  const third = await loginViaHttp(`${s.url}/oauth2/start?provider=corp&rd=/both/`, { ...ALICE, jar: corpJar3, stopAt: callback });
  const back3 = new URL(third.finalUrl);
  back3.searchParams.set('iss', s.partners.issuer);
  const wrongIss = await request(back3, { headers: { accept: 'application/json', cookie: corpJar3.header(back3) } });
  const wrongIssBody = await wrongIss.body.text();
  assert.equal(wrongIss.statusCode, 400, wrongIssBody);
  assert.equal(JSON.parse(wrongIssBody).error, 'ERR_CALLBACK_ISSUER_MISMATCH');
  assert.ok(![wrongIss.headers['set-cookie'] ?? []].flat().some((c) => /^portcullis=[^;]/.test(String(c))), 'no session');

  // The control: corp's code with corp's state and iss signs in.
  const corpJar4 = new CookieJar();
  const fourth = await loginViaHttp(`${s.url}/oauth2/start?provider=corp&rd=/both/`, { ...ALICE, jar: corpJar4, stopAt: callback });
  const ok = await followRedirects(fourth.finalUrl, corpJar4);
  assert.equal(ok.status, 200);
  assert.equal((await get(`${s.url}/corp/x`, corpJar4)).status, 200);
});

test('bearer JWTs: picked by iss among the route\'s providers; another provider\'s, an unconfigured issuer\'s or a mismatched key\'s are invalid_token', async (t) => {
  const corpKey = key('corp-key');
  const partnersKey = key('partners-key');
  const s = await startTwoProviders(t, { keys: { corp: [corpKey], partners: [partnersKey] } });
  const now = Math.floor(Date.now() / 1000);
  const token = async (iss: string, k: JWK, over: Record<string, unknown> = {}) =>
    new SignJWT({ iss, aud: 'urn:api', sub: 'svc', iat: now, exp: now + 300, ...over }).setProtectedHeader({ alg: 'RS256', kid: k.kid!, typ: 'at+jwt' }).sign(await importJWK(k, 'RS256'));
  const call = async (path: string, jwt: string) => {
    const r = await request(`${s.url}${path}`, { headers: { authorization: `Bearer ${jwt}`, accept: 'application/json' } });
    const body = await r.body.text();
    return { status: r.statusCode, body };
  };
  const fromPartners = await token(s.partners.issuer, partnersKey);
  const fromCorp = await token(s.corp.issuer, corpKey);
  assert.equal((await call('/api/x', fromPartners)).status, 200, 'partners token on a route for both');
  assert.equal((await call('/api/x', fromCorp)).status, 200, 'corp token on a route for both');
  assert.equal((await call('/corp-api/x', fromCorp)).status, 200);
  const wrongProvider = await call('/corp-api/x', fromPartners);
  assert.equal(wrongProvider.status, 401, 'a partners token on a corp-only route');
  assert.equal(JSON.parse(wrongProvider.body).error, 'invalid_token');
  assert.equal((await call('/api/x', await token('https://evil.example', partnersKey))).status, 401, 'an unconfigured issuer');
  assert.equal((await call('/api/x', await token(`${s.corp.issuer}/`, corpKey))).status, 401, 'an issuer that only resembles a configured one');
  assert.equal((await call('/api/x', await token(s.corp.issuer, partnersKey))).status, 401, 'corp\'s iss, signed by partners\' key');
  assert.equal((await call('/corp-api/x', await token(s.corp.issuer, partnersKey))).status, 401, 'corp\'s iss, signed by partners\' key, on corp\'s only route');
  assert.equal((await call('/api/x', 'not-a-jwt')).status, 401);
});

test('a partners back-channel logout for "alice" ends partners\' alice only; an unconfigured iss is refused', async (t) => {
  const corpKey = key('corp-key');
  const partnersKey = key('partners-key');
  const s = await startTwoProviders(t, { keys: { corp: [corpKey], partners: [partnersKey] } });
  const corpAlice = await signIn(s, 'corp');
  const partnersAlice = await signIn(s, 'partners');
  const now = Math.floor(Date.now() / 1000);
  const logoutToken = async (iss: string, k: JWK) => new SignJWT({ iss, aud: s.partners.clientId, iat: now, jti: randomUUID(), events: EVENT, sub: 'alice' })
    .setProtectedHeader({ alg: 'RS256', kid: k.kid!, typ: 'logout+jwt' }).sign(await importJWK(k, 'RS256'));
  const post = async (token: string) => {
    const r = await request(`${s.url}/oauth2/backchannel_logout`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: token }).toString() });
    return { status: r.statusCode, body: await r.body.text() };
  };
  assert.equal((await post(await logoutToken('https://evil.example', partnersKey))).status, 400, 'an issuer no provider has');
  assert.equal((await post(await logoutToken(s.corp.issuer, partnersKey))).status, 400, 'corp\'s iss with partners\' key');
  assert.equal((await get(`${s.url}/both/x`, corpAlice)).status, 200);

  const done = await post(await logoutToken(s.partners.issuer, partnersKey));
  assert.equal(done.status, 200, done.body);
  assert.equal((await get(`${s.url}/both/x`, partnersAlice)).status, 401, 'partners\' alice is signed out');
  assert.equal((await get(`${s.url}/both/x`, corpAlice)).status, 200, 'corp\'s alice is not');
});

test('the chooser: several providers offered, escaped, domain hint; ?provider= skips it; an unknown id is a 400', async (t) => {
  const s = await startTwoProviders(t, { edit: (raw) => { (raw.oidc as Array<Record<string, unknown>>)[1]!.displayName = 'Partners <b>&</b> "friends"'; } });
  const jar = new CookieJar();
  const nav = await get(`${s.url}/both/page?q=1`, jar, true);
  assert.equal(nav.status, 302);
  const start = new URL(String(nav.headers.location));
  assert.equal(start.pathname, '/oauth2/start');
  assert.equal(start.searchParams.get('rd'), `${s.url}/both/page?q=1`);
  const page = await get(start.href, jar, true);
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /text\/html/);
  assert.match(page.body, /Example Corp staff/);
  assert.match(page.body, /corp\.example/, 'the domain hint is shown');
  assert.match(page.body, /Partners &lt;b&gt;&amp;&lt;\/b&gt; &quot;friends&quot;/, 'names are escaped');
  assert.doesNotMatch(page.body, /<script/i);
  const links = [...page.body.matchAll(/href="([^"]+)"/g)].map((m) => new URL(m[1]!.replace(/&amp;/g, '&'), s.url));
  assert.deepEqual(links.map((l) => l.searchParams.get('provider')), ['corp', 'partners']);
  assert.ok(links.every((l) => l.searchParams.get('rd') === `${s.url}/both/page?q=1`));

  const corp = await get(links[0]!.href, jar, true);
  assert.equal(corp.status, 302);
  const authz = new URL(String(corp.headers.location));
  assert.equal(authz.origin, s.corp.issuer);
  assert.equal(authz.searchParams.get('domain_hint'), 'corp.example');
  const partners = await get(`${s.url}/oauth2/start?provider=partners`, jar, true);
  assert.equal(new URL(String(partners.headers.location)).origin, s.partners.issuer);
  assert.equal(new URL(String(partners.headers.location)).searchParams.get('domain_hint'), null);

  const unknown = await get(`${s.url}/oauth2/start?provider=nope`, jar);
  assert.equal(unknown.status, 400);
  assert.equal(JSON.parse(unknown.body).error, 'ERR_PROVIDER_UNKNOWN');
  const weird = await get(`${s.url}/oauth2/start?provider=%3Cscript%3E`, jar, true);
  assert.equal(weird.status, 400);
  assert.doesNotMatch(weird.body, /<script>/);
  // `providers=` only filters what the page offers.
  const filtered = await get(`${s.url}/oauth2/start?providers=partners,nope`, jar, true);
  assert.equal(filtered.status, 302, 'one offered: straight to it');
  assert.equal(new URL(String(filtered.headers.location)).origin, s.partners.issuer);
});

test('config: provider ids and issuers unique, routes and rules name configured providers, key paths per provider', () => {
  const base = (oidc: unknown, routes: unknown[] = [{ name: 'a', upstream: 'http://127.0.0.1:1' }]) => validateConfigObject({
    publicUrl: 'https://apps.example.com', session: { secrets: ['x'.repeat(32)] }, oidc, routes,
  }, {});
  const p = (id: string, issuer = `https://${id}.example.com`) => ({ id, issuer, clientId: 'c', clientSecret: 's' });
  const issues = (r: ReturnType<typeof base>) => (r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`));

  const one = base({ issuer: 'https://idp.example.com', clientId: 'c', clientSecret: 's' });
  assert.ok(one.ok, issues(one).join('\n'));
  assert.deepEqual(one.config.providers.map((x) => x.id), ['default'], 'the mapping form is one provider, id default');
  assert.deepEqual([...one.config.routes[0]!.providers], ['default']);

  const two = base([p('corp'), p('partners')], [{ name: 'a', upstream: 'http://127.0.0.1:1', providers: ['partners'] }, { name: 'b', upstream: 'http://127.0.0.1:1' }]);
  assert.ok(two.ok, issues(two).join('\n'));
  assert.deepEqual([...two.config.routes[0]!.providers], ['partners']);
  assert.deepEqual([...two.config.routes[1]!.providers], ['corp', 'partners'], 'default: every provider');

  const bad = issues(base([p('corp'), p('corp', 'https://other.example.com'), p('x', 'https://corp.example.com'), { issuer: 'https://y.example.com', clientId: 'c', clientSecret: 's' }, { ...p('bad id!') }], [
    { name: 'a', upstream: 'http://127.0.0.1:1', providers: ['corp', 'nope'] },
    { name: 'b', upstream: 'http://127.0.0.1:1', allow: { any: [{ provider: 'ghost' }, { claim: 'sub', exists: true }] } },
  ]));
  const has = (re: RegExp) => assert.ok(bad.some((l) => re.test(l)), `${re} in:\n${bad.join('\n')}`);
  has(/^oidc\[1\]\.id: duplicate provider id "corp"/);
  has(/^oidc\[2\]\.issuer: the issuer of oidc\[0\] too/);
  has(/^oidc\[3\]\.id: is required/);
  has(/^oidc\[4\]\.id: letters, digits/);
  has(/^routes\[0\]\.providers\[1\]: unknown provider "nope"/);
  has(/^routes\[1\]\.allow: tests provider "ghost"/);

  const introspect = issues(base([p('corp'), p('partners')].map((x) => ({ ...x, bearerAudiences: ['urn:api'] })), [{ name: 'a', upstream: 'http://127.0.0.1:1', bearer: 'introspect' }]));
  assert.ok(introspect.some((l) => /^routes\[0\]\.providers: bearer: introspect asks one provider/.test(l)), introspect.join('\n'));
  const noAud = issues(base([p('corp'), p('partners')], [{ name: 'a', upstream: 'http://127.0.0.1:1', bearer: true }]));
  assert.ok(noAud.some((l) => /^routes\[0\]\.bearer: .*bearerAudiences/.test(l)), noAud.join('\n'));
  const missing = issues(base([p('corp'), { id: 'x', clientId: 'c' }]));
  assert.ok(missing.some((l) => /^oidc\[1\]\.issuer: is required/.test(l)), missing.join('\n'));
  assert.ok(missing.some((l) => /^oidc\[1\]\.clientSecret: is required/.test(l)), missing.join('\n'));
});
