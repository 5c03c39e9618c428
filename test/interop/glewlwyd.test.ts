// Interop suite against Glewlwyd (Debian's package, a real OpenID Provider we did not write), driven
// through Glewlwyd's OWN login page in Chromium. Run alone: `npm run test:interop` (not part of `npm test`).
// One Glewlwyd per file (configured only through its admin API); each test has its own client and its own Portcullis.
// Without Glewlwyd installed the suite skips locally and fails with CI=true.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseConfigText } from '../../src/config/load.js';
import { KEY_REFRESH_COOLDOWN_MS } from '../../src/signin/idp.js';
import { WebSocket } from 'ws';
import { launchChromium } from '../helpers/chromium.js';
import { until } from '../helpers/wait.js';
import { ALICE, BOB } from './idp.js';
import { missingGlewlwydReason, startGlewlwyd, type Glewlwyd } from './glewlwyd.js';
import { startInteropStack } from './portcullis.js';
import { identityHeader, lastNavigationStatus } from './pages.js';

const TEST_TIMEOUT_MS = 60_000;
const skip = missingGlewlwydReason();

/** A secret with every character RFC 6749 Appendix B form-encodes although encodeURIComponent keeps it. */
const TRICKY_SECRET = 'Tricky-secret_with.dots~and-tildes';

describe('Glewlwyd interop', { skip }, () => {
  let idp: Glewlwyd;
  before(async () => { idp = await startGlewlwyd(); });
  after(async () => { await idp?.stop(); });

  test('sign-in through Glewlwyd\'s own login page: back at the original URL with identity headers from its ID token', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const context = await launchChromium(t);
    if (!context) return;
    const s = await startInteropStack(t, idp, { clientId: 'signin' });
    const page = await context.newPage();

    await page.goto(`${s.url}/somewhere?q=1`, { waitUntil: 'domcontentloaded' });
    assert.equal(new URL(page.url()).origin, idp.origin, 'sent to Glewlwyd');
    assert.equal(new URL(page.url()).pathname, '/login.html', 'Glewlwyd shows its own login page');
    await idp.signIn(page, ALICE);

    assert.equal(page.url(), `${s.url}/somewhere?q=1`, 'back at the original URL, query string included');
    assert.equal(await page.locator('h1').innerText(), 'Portcullis demo upstream');
    // Glewlwyd's `sub` is an opaque per-user identifier (subject-type public), not the username.
    const sub = await identityHeader(page, 'x-forwarded-user');
    assert.match(sub, /^[A-Za-z0-9]{16,}$/, `sub is Glewlwyd's opaque id: ${sub}`);
    assert.notEqual(sub, 'alice');
    assert.equal(await identityHeader(page, 'x-forwarded-email'), ALICE.email);
    assert.equal(await identityHeader(page, 'x-forwarded-preferred-username'), 'alice');
    assert.equal(await identityHeader(page, 'x-forwarded-groups'), 'admin,dev');
    assert.match(await page.locator('body').innerText(), /GET \/somewhere\?q=1/, 'the upstream saw the original path');

    const cookies = await context.cookies(s.url);
    assert.ok(cookies.some((c) => c.name === 'portcullis'), `a session cookie is set (have ${cookies.map((c) => c.name).join(', ')})`);
    const seen = s.upstream.requests.at(-1)?.headers.cookie;
    assert.ok(!String(seen ?? '').includes('GLEWLWYD'), `Glewlwyd's cookies do not reach the upstream (different host names): ${seen}`);
  });

  test('bob (no groups) gets 403 on the admin route and the upstream never sees it', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const context = await launchChromium(t);
    if (!context) return;
    const s = await startInteropStack(t, idp, { clientId: 'rules' });
    const page = await context.newPage();
    const status = lastNavigationStatus(page);

    await page.goto(`${s.url}/admin`, { waitUntil: 'domcontentloaded' });
    await idp.signIn(page, BOB);
    assert.equal(page.url(), `${s.url}/admin`);
    assert.equal(status(), 403);
    const body = await page.locator('body').innerText();
    assert.match(body, /You don't have access to this page/);
    assert.match(body, /bob@example\.com/, 'the page says who is signed in');
    assert.equal(s.upstream.requests.filter((r) => r.url.startsWith('/admin')).length, 0, 'the upstream never saw /admin');

    // The same session may use the app route: bob has no groups claim at all, not an error.
    await page.goto(`${s.url}/app`, { waitUntil: 'domcontentloaded' });
    assert.equal(status(), 200);
    assert.equal(await identityHeader(page, 'x-forwarded-preferred-username'), 'bob');
  });

  describe('token endpoint client authentication', () => {
    test('client_secret_post with a secret containing -_.~ signs in', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const context = await launchChromium(t);
      if (!context) return;
      const s = await startInteropStack(t, idp, { clientId: 'authpost', clientSecret: TRICKY_SECRET, tokenEndpointAuthMethod: 'client_secret_post' });
      const page = await context.newPage();
      await page.goto(`${s.url}/post`, { waitUntil: 'domcontentloaded' });
      await idp.signIn(page, ALICE);
      assert.equal(page.url(), `${s.url}/post`);
      assert.equal(await identityHeader(page, 'x-forwarded-preferred-username'), 'alice');
    });

    // openid-client form-encodes the client id too: with Glewlwyd, client_secret_basic needs an id
    // and a secret made of letters and digits only (no - _ . ~ ! * ' ( )).
    test('client_secret_basic with a client id and secret of letters and digits only signs in', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const context = await launchChromium(t);
      if (!context) return;
      const s = await startInteropStack(t, idp, { clientId: 'authbasicplain', clientSecret: 'PlainSecret0123456789', tokenEndpointAuthMethod: 'client_secret_basic' });
      const page = await context.newPage();
      await page.goto(`${s.url}/basic`, { waitUntil: 'domcontentloaded' });
      await idp.signIn(page, ALICE);
      assert.equal(page.url(), `${s.url}/basic`);
      assert.equal(await identityHeader(page, 'x-forwarded-preferred-username'), 'alice');
    });

    // KNOWN QUIRK (Glewlwyd 2.7): RFC 6749 §2.3.1 has the client form-encode id and secret before
    // Base64 in client_secret_basic (openid-client does: `-` → %2D, `~` → %7E …); Glewlwyd compares
    // the encoded secret as is and answers invalid_client. This test pins that down: the sign-in must
    // FAIL visibly (an error page, never the upstream) — it is not a pass of client_secret_basic.
    // Operators: use client_secret_post with Glewlwyd (examples/idps/glewlwyd.md).
    test('client_secret_basic with a secret containing -_.~ fails at Glewlwyd (known quirk: no form-decoding of Basic credentials) and the failure is reported', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const context = await launchChromium(t);
      if (!context) return;
      const s = await startInteropStack(t, idp, { clientId: 'authbasictricky', clientSecret: TRICKY_SECRET, tokenEndpointAuthMethod: 'client_secret_basic' });

      // The quirk itself, without Portcullis: raw Basic works, RFC 6749 form-encoded Basic does not.
      const tokenWith = async (userpass: string): Promise<number> => {
        const res = await fetch(`${idp.issuer}/token`, {
          method: 'POST',
          headers: { authorization: `Basic ${Buffer.from(userpass).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'api' }),
        });
        await res.arrayBuffer();
        return res.status;
      };
      const formEncoded = encodeURIComponent(TRICKY_SECRET).replace(/[-_.!~*'()]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
      assert.equal(await tokenWith(`authbasictricky:${TRICKY_SECRET}`), 200, 'Glewlwyd accepts the secret sent raw in Basic');
      assert.notEqual(await tokenWith(`authbasictricky:${formEncoded}`), 200, 'Glewlwyd refuses the RFC 6749 form-encoded secret in Basic');

      const page = await context.newPage();
      const status = lastNavigationStatus(page);
      await page.goto(`${s.url}/basic`, { waitUntil: 'domcontentloaded' });
      await idp.signIn(page, ALICE);
      assert.equal(new URL(page.url()).pathname, '/oauth2/callback', 'the browser ends on the callback');
      assert.equal(s.upstream.requests.length, 0, 'the upstream never saw a request');
      assert.ok(!(await context.cookies(s.url)).some((c) => c.name === 'portcullis'), 'no session');
      const body = await page.locator('body').innerText();
      const code = /ERR_[A-Z_]+/.exec(body)?.[0];
      assert.ok(code, `the error page names an error code: ${body}`);
      // Glewlwyd answers a failed client authentication at the token endpoint with `unauthorized_client`
      // (RFC 6749 §5.2 says invalid_client), which Portcullis reports as a refused token request — not
      // as a bad code (ERR_CALLBACK_CODE_REJECTED, the reporting bug fixed in f7e48f6).
      t.diagnostic(`Portcullis reported ${code}`);
      assert.match(code!, /^ERR_CALLBACK_(CLIENT_AUTH|TOKEN_REQUEST_REFUSED)$/, `a token-request refusal, not a bad code: ${body}`);
      assert.match(body, /unauthorized_client|invalid_client/, 'the page names the IdP\'s error');
      assert.equal(status(), 502);
    });
  });

  describe('RP-initiated sign-out', () => {
    /** Signs alice in, signs out at Portcullis, and clicks Logout on Glewlwyd's own end-session page. */
    async function signOutThroughGlewlwyd(t: TestContext, clientId: string) {
      const context = await launchChromium(t);
      if (!context) return undefined;
      const s = await startInteropStack(t, idp, { clientId });
      const page = await context.newPage();
      await page.goto(`${s.url}/app`, { waitUntil: 'domcontentloaded' });
      await idp.signIn(page, ALICE);
      assert.equal(page.url(), `${s.url}/app`);

      await page.goto(`${s.url}/oauth2/sign_out`, { waitUntil: 'domcontentloaded' });
      await Promise.all([
        page.waitForURL((u) => u.origin === idp.origin, { waitUntil: 'domcontentloaded' }),
        page.getByRole('button', { name: 'Sign out' }).click(),
      ]);
      assert.ok(!(await context.cookies(s.url)).some((c) => c.name === 'portcullis'), 'the Portcullis session cookie is cleared');
      const endSessionUrl = page.url();
      // Glewlwyd's end-session page (login.html?prompt=end_session) names our post-logout URI and asks.
      await page.getByText('End session').waitFor();
      const body = await page.locator('body').innerText();
      assert.match(body, new RegExp(`redirected to: ${s.url}/oauth2/signed_out`), `Glewlwyd accepted our post_logout_redirect_uri: ${body}`);
      await idp.confirmEndSession(page);
      return { context, s, page, endSessionUrl };
    }

    test('signing out at Portcullis ends the Glewlwyd session too (its end-session page, then a password again)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const r = await signOutThroughGlewlwyd(t, 'signout');
      if (!r) return;
      await r.page.goto(`${r.s.url}/again`, { waitUntil: 'domcontentloaded' });
      assert.equal(new URL(r.page.url()).origin, idp.origin, 'back at Glewlwyd');
      await assert.doesNotReject(r.page.locator('input#password').waitFor(), 'Glewlwyd asks for the password again: its session ended');
    });

    // Glewlwyd 2.7 only redirects after end_session when the request carries `state` (it puts
    // post_redirect_to in its logout page only then); without it the user was stranded on "Session
    // closed". Portcullis sends a state bound to the browser since 463de39.
    test('RP-initiated sign-out comes back to Portcullis\'s signed-out page', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const r = await signOutThroughGlewlwyd(t, 'signoutback');
      if (!r) return;
      t.diagnostic(`end_session sent the browser to ${r.endSessionUrl}`);
      assert.equal(new URL(r.page.url()).origin, r.s.url, `back at Portcullis, not stranded at ${r.page.url()}`);
      assert.equal(new URL(r.page.url()).pathname, '/oauth2/signed_out');
      assert.match(await r.page.locator('h1').innerText(), /signed out/i);
    });
  });

  test('back-channel logout: signing out of one app through Glewlwyd ends the session (and WebSocket) of another app of the same Glewlwyd session', { timeout: 90_000 }, async (t) => {
    const context = await launchChromium(t);
    if (!context) return;
    const a = await startInteropStack(t, idp, { clientId: 'bclA' });
    // Both apps are on host `localhost` (cookies ignore ports): B's session cookie needs its own name,
    // else signing out of A clears B's cookie and B "ends" without any back-channel call.
    const b = await startInteropStack(t, idp, { clientId: 'bclB', edit: (raw) => { (raw.session as Record<string, unknown>).cookieName = 'portcullis_b'; } });
    const pageA = await context.newPage();
    await pageA.goto(`${a.url}/a`, { waitUntil: 'domcontentloaded' });
    await idp.signIn(pageA, ALICE);
    assert.equal(pageA.url(), `${a.url}/a`);
    // Same browser, same Glewlwyd session: no password for B, only its consent screen.
    const pageB = await context.newPage();
    await pageB.goto(`${b.url}/b`, { waitUntil: 'domcontentloaded' });
    await idp.signIn(pageB, ALICE);
    assert.equal(pageB.url(), `${b.url}/b`);

    // A WebSocket of B's session, open through Portcullis (from Node with B's cookie: the echo
    // upstream's page has a CSP that forbids scripts to connect anywhere).
    const cookieB = (await context.cookies(b.url)).map((c) => `${c.name}=${c.value}`).join('; ');
    const ws = new WebSocket(`${b.url.replace('http:', 'ws:')}/ws`, { headers: { cookie: cookieB } });
    t.after(() => ws.terminate());
    const wsClosed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    // The echo upstream's first message: the upgrade went all the way through.
    await new Promise<void>((resolve, reject) => { ws.once('message', () => resolve()); ws.once('error', reject); });
    const bStatus = async (): Promise<number> => (await context.request.get(`${b.url}/b-again`, { maxRedirects: 0, headers: { accept: 'text/html' } })).status();
    assert.equal(await bStatus(), 200, 'B is signed in');

    // Sign out of A at Portcullis, then Logout on Glewlwyd's end-session page: Glewlwyd ends its
    // session and POSTs a logout token to every client of it (B's /oauth2/backchannel_logout).
    await pageA.goto(`${a.url}/oauth2/sign_out`, { waitUntil: 'domcontentloaded' });
    await Promise.all([
      pageA.waitForURL((u) => u.origin === idp.origin, { waitUntil: 'domcontentloaded' }),
      pageA.getByRole('button', { name: 'Sign out' }).click(),
    ]);
    await idp.confirmEndSession(pageA);

    let status = await bStatus();
    await until('B\'s session to end', 15_000, async () => (status = await bStatus()) !== 200).catch(() => {}); // the assertion below says what was seen
    t.diagnostic(`Glewlwyd's back-channel log: ${idp.log().split('\n').filter((l) => /backchannel|logout/i.test(l)).join(' | ') || '(nothing at INFO)'}`);
    assert.equal(status, 302, `B's session ended: a new request is sent to sign in (got ${status}); Portcullis B log: ${b.logs.filter((l) => /backchannel|logout/i.test(l)).slice(-3).join('\n')}`);
    const closed = await Promise.race([wsClosed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000))]);
    t.diagnostic(`Portcullis B: ${b.logs.filter((l) => /logout|revok|websocket|upgrade/i.test(l)).map((l) => l.slice(0, 400)).join(' | ')}`);
    assert.ok(closed !== undefined, 'B\'s WebSocket was closed by Portcullis');
    t.diagnostic(`WebSocket close code ${closed}`);
  });

  test('key rotation at Glewlwyd (new key first, old kept) is picked up without a restart: bearer tokens and sign-ins signed with the new key', { timeout: 120_000 }, async (t) => {
    // Both browsers before the stack: cleanups run in order, and Portcullis's close waits for open browser connections.
    const context = await launchChromium(t);
    const context2 = await launchChromium(t);
    if (!context || !context2) return;
    const s = await startInteropStack(t, idp, {
      clientId: 'rotation',
      routes: [{ name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true }, { name: 'app', match: { path: '/' }, upstream: '{upstream}' }],
      edit: (raw) => { (raw.oidc as Record<string, unknown>).bearerAudiences = ['api']; },
    });
    const kidOf = (jwt: string): string => (JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
    const bearer = async (): Promise<{ status: number; kid: string }> => {
      const token = await idp.clientCredentialsToken(s.client, 'api');
      const res = await fetch(`${s.url}/api/x`, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
      await res.arrayBuffer();
      return { status: res.status, kid: kidOf(token) };
    };
    const t0 = Date.now();
    const mark = (what: string): void => t.diagnostic(`${what} at ${Date.now() - t0} ms`);
    // Before: a session and a bearer token with the current key (Portcullis has fetched the JWKS).
    const page = await context.newPage();
    await page.goto(`${s.url}/before`, { waitUntil: 'domcontentloaded' });
    await idp.signIn(page, ALICE);
    assert.equal(page.url(), `${s.url}/before`);
    const first = await bearer();
    assert.equal(first.status, 200);

    mark('signed in, bearer ok');
    const { oldKid, newKid } = await idp.rotateKeys();
    mark('rotated');
    assert.equal(first.kid, oldKid);
    const rotatedAt = Date.now();

    // A token signed with the new key: accepted once Portcullis refetches the JWKS for the unknown kid —
    // at most one refetch per KEY_REFRESH_COOLDOWN_MS (5 s) after the previous one, which was before the rotation.
    let after = await bearer();
    assert.equal(after.kid, newKid, 'Glewlwyd signs with the new key');
    await until('a bearer token signed with the new key to be accepted', KEY_REFRESH_COOLDOWN_MS + 3_000, async () => (after = await bearer()).status === 200, 100);
    const bearerDelay = Date.now() - rotatedAt;
    t.diagnostic(`bearer token with the new kid accepted after ${bearerDelay} ms`);
    assert.equal(after.status, 200, 'a bearer token signed with the new key is accepted without a restart');

    // The existing session goes on; a new sign-in gets an ID token signed with the new key.
    await page.goto(`${s.url}/still`, { waitUntil: 'domcontentloaded' });
    assert.equal(page.url(), `${s.url}/still`, 'the session from before the rotation goes on');
    mark('old session ok');
    const page2 = await context2.newPage();
    await page2.goto(`${s.url}/after`, { waitUntil: 'domcontentloaded' });
    await idp.signIn(page2, BOB);
    mark('new sign-in done');
    assert.equal(page2.url(), `${s.url}/after`, `sign-in with an ID token signed by the new key: ${await page2.locator('body').innerText().catch(() => '')}`);
    assert.equal(await identityHeader(page2, 'x-forwarded-preferred-username'), 'bob');
  });

  // IdP and apps on one host name: the browser sends Glewlwyd's session cookies to the apps too;
  // `stripCookies` (the documented example in examples/idps/glewlwyd.md) keeps them from upstreams.
  test('Glewlwyd\'s own cookies do not reach the upstream when Glewlwyd and the apps share a host name (stripCookies)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const context = await launchChromium(t);
    if (!context) return;
    const s = await startInteropStack(t, idp, { clientId: 'samehost', host: new URL(idp.origin).hostname, edit: (raw) => { raw.stripCookies = ['GLEWLWYD2_*']; } });
    const page = await context.newPage();
    await page.goto(`${s.url}/shared`, { waitUntil: 'domcontentloaded' });
    await idp.signIn(page, ALICE);
    assert.equal(page.url(), `${s.url}/shared`);
    const cookie = String(s.upstream.requests.at(-1)?.headers.cookie ?? '');
    const names = cookie.split(/;\s*/).map((c) => c.split('=')[0]).filter(Boolean);
    t.diagnostic(`cookies the upstream received: ${names.join(', ') || '(none)'}`);
    assert.ok(!names.some((n) => n!.startsWith('GLEWLWYD')), `Glewlwyd's session cookies reached the upstream: ${names.join(', ')}`);
  });

  const DOC_ENV = { OIDC_CLIENT_SECRET: TRICKY_SECRET, SESSION_SECRET: 'interop-session-secret-0123456789-abcdefghij' };
  test('the portcullis.yaml in examples/idps/glewlwyd.md signs in against Glewlwyd', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const context = await launchChromium(t);
    if (!context) return;
    const md = readFileSync(new URL('../../examples/idps/glewlwyd.md', import.meta.url), 'utf8');
    const blocks = [...md.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    assert.equal(blocks.length, 1, 'the page has one yaml block: the tested portcullis.yaml');
    const s = await startInteropStack(t, idp, {
      clientId: 'portcullis', clientSecret: TRICKY_SECRET, idpAuthMethods: ['client_secret_post'],
      // The same YAML reading and ${VAR} substitution as `portcullis --config FILE`.
      config: ({ url, upstreamUrl }) => parseConfigText(blocks[0]!
        .replaceAll('https://apps.example.com', url)
        .replaceAll('https://sso.example.com', idp.origin)
        .replaceAll('http://admin.internal:8080', upstreamUrl)
        .replaceAll('http://app.internal:8080', upstreamUrl), DOC_ENV).value as Record<string, unknown>,
    });
    assert.equal(s.config.providers[0]!.issuer, `${idp.origin}/api/oidc`);
    assert.equal(s.config.providers[0]!.tokenEndpointAuthMethod, 'client_secret_post');
    const page = await context.newPage();
    await page.goto(`${s.url}/admin/panel`, { waitUntil: 'domcontentloaded' });
    await idp.signIn(page, ALICE);
    assert.equal(page.url(), `${s.url}/admin/panel`, 'alice (group admin) reaches the admin route');
    assert.equal(await identityHeader(page, 'x-forwarded-groups'), 'admin,dev');
    await page.goto(`${s.url}/home`, { waitUntil: 'domcontentloaded' });
    assert.equal(s.upstream.requests.at(-1)?.headers['x-webauth-user'], 'alice', 'the app route tells the upstream the user name');
  });

  test('a client-credentials access token from Glewlwyd is accepted on a bearer route; a tampered one is refused', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const s = await startInteropStack(t, idp, {
      clientId: 'bearer',
      routes: [{ name: 'api', match: { path: '/api' }, upstream: '{upstream}', bearer: true }, { name: 'app', match: { path: '/' }, upstream: '{upstream}' }],
      // Glewlwyd puts the granted scope string in `aud` of a client_credentials token (here the one scope `api`).
      edit: (raw) => { (raw.oidc as Record<string, unknown>).bearerAudiences = ['api']; },
    });
    const token = await idp.clientCredentialsToken(s.client, 'api');
    const [header, payload] = token.split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>);
    t.diagnostic(`client_credentials token header ${JSON.stringify(header)} claims ${JSON.stringify(payload)}`);

    const get = async (authorization: string): Promise<{ status: number; body: string }> => {
      const res = await fetch(`${s.url}/api/thing`, { headers: { authorization, accept: 'application/json' }, redirect: 'manual' });
      return { status: res.status, body: await res.text() };
    };
    const ok = await get(`Bearer ${token}`);
    assert.equal(ok.status, 200, `accepted: ${ok.body}`);
    const seen = s.upstream.requests.at(-1)!;
    assert.equal(seen.url, '/api/thing');
    assert.equal(seen.headers['x-forwarded-user'], 'bearer', 'the client is the subject');

    const parts = token.split('.');
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString()) as Record<string, unknown>;
    const tampered = [parts[0], Buffer.from(JSON.stringify({ ...claims, sub: 'admin' })).toString('base64url'), parts[2]].join('.');
    const before = s.upstream.requests.length;
    const bad = await get(`Bearer ${tampered}`);
    assert.equal(bad.status, 401, `refused: ${bad.body}`);
    assert.equal(s.upstream.requests.length, before, 'the upstream never saw the tampered request');
  });
});

