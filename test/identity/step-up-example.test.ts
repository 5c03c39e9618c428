// examples/step-up/portcullis.yaml, exactly as shipped (only its ${VAR}s filled in), against the
// development IdP offering the acr values pwd, mfa and phr: what the example's README walks through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startExample } from '../helpers/example.js';
import { freePort, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { startTestIdp, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';
import { processClock } from '../helpers/clock.js';
import { ACR_VALUES, ALICE } from '../helpers/step-up.js';

const FILE = fileURLToPath(new URL('../../examples/step-up/portcullis.yaml', import.meta.url));

test('examples/step-up: the console steps a password sign-in up to mfa/phr in the same session, and again after 10 minutes; the app never asks', async (t) => {
  const clock = processClock(t);
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const idp = await startTestIdp(t, { redirectUris: [`${publicUrl}/oauth2/callback`], acrValues: ACR_VALUES });
  const admin = await startTestUpstream(t);
  const app = await startTestUpstream(t);
  const server = await startExample(t, FILE, {
    PUBLIC_URL: publicUrl, OIDC_ISSUER: idp.issuer, OIDC_CLIENT_ID: TEST_CLIENT_ID, OIDC_CLIENT_SECRET: TEST_CLIENT_SECRET,
    SESSION_SECRET: TEST_SESSION_SECRET, ADMIN_UPSTREAM: admin.url, APP_UPSTREAM: app.url,
  }, port, { now: clock.now });
  const sessionOf = async (jar: CookieJar) => {
    const lookup = await server.runtime.sessions.lookup({ portcullis: jar.get('portcullis', publicUrl) });
    return lookup.kind === 'valid' ? lookup.session : undefined;
  };

  // 1. A password sign-in to the app.
  const jar = (await loginViaHttp(`${publicUrl}/`, { ...ALICE, fields: { acr: 'pwd' } })).jar;
  const first = await sessionOf(jar);
  assert.equal(first?.claims.acr, 'pwd');

  // 2. The console: sent to the IdP for phr or mfa (and a sign-in at most 10 minutes old).
  const asked = new URL((await followRedirects(`${publicUrl}/admin/users`, jar, { stopAt: (u) => u.origin === idp.issuer })).finalUrl);
  assert.equal(asked.searchParams.get('acr_values'), 'phr mfa');
  assert.equal(asked.searchParams.get('max_age'), '600');
  // 3. The second factor at the IdP (mfa); back at the console, in the same session.
  const up = await loginViaHttp(`${publicUrl}/admin/users`, { ...ALICE, jar, fields: { acr: 'mfa' } });
  assert.equal(up.finalUrl, `${publicUrl}/admin/users`);
  assert.equal(admin.requests.at(-1)!.url, '/admin/users');
  const upgraded = await sessionOf(jar);
  assert.equal(upgraded?.claims.acr, 'mfa');
  assert.equal(upgraded?.sid, first!.sid);
  // 4. The app works on, without another sign-in.
  assert.deepEqual((await followRedirects(`${publicUrl}/wiki`, jar)).hops.map((h) => h.status), [200]);

  // An API call on the console with a weak session: RFC 9470's 401, as section 4 shows.
  const weak = (await loginViaHttp(`${publicUrl}/`, { ...ALICE, fields: { acr: 'pwd' } })).jar;
  const api = await request(`${publicUrl}/admin/api/users`, { headers: { cookie: weak.header(publicUrl), accept: 'application/json' } });
  assert.equal(api.statusCode, 401);
  assert.equal(api.headers['www-authenticate'], `OIDC realm="portcullis", error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="phr mfa", max_age="600", sign_in_url="${publicUrl}/oauth2/start?step_up=admin-console"`);
  await api.body.dump();

  // 5. Eleven minutes later: the console asks again, now with prompt=login; the app does not.
  clock.advance(11 * 60_000);
  assert.deepEqual((await followRedirects(`${publicUrl}/wiki`, jar)).hops.map((h) => h.status), [200]);
  const again = new URL((await followRedirects(`${publicUrl}/admin/users`, jar, { stopAt: (u) => u.origin === idp.issuer })).finalUrl);
  assert.equal(again.searchParams.get('prompt'), 'login');
  const fresh = await loginViaHttp(`${publicUrl}/admin/users`, { ...ALICE, jar, fields: { acr: 'phr' } });
  assert.equal(fresh.finalUrl, `${publicUrl}/admin/users`);
  const later = await sessionOf(jar);
  assert.equal(later?.sid, first!.sid);
  assert.equal(later?.claims.acr, 'phr');
  assert.ok(Number(later?.claims.auth_time) * 1000 > clock.now() - 60_000, 'a fresh auth_time');
});
