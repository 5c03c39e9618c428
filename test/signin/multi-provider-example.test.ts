// examples/multi-provider/portcullis.yaml, exactly as shipped (only its ${VAR}s filled in), against
// two development IdPs: what the example's README walks through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startExample } from '../helpers/example.js';
import { freePort, TEST_SESSION_SECRET } from '../helpers/stack.js';
import { startTestIdp, TEST_CLIENT_ID, TEST_CLIENT_SECRET } from '../helpers/idp.js';
import { startTestUpstream } from '../helpers/upstream.js';
import { CookieJar, followRedirects, loginViaHttp } from '../helpers/browserless-login.js';

const FILE = fileURLToPath(new URL('../../examples/multi-provider/portcullis.yaml', import.meta.url));
const ALICE = { user: 'alice', password: 'alice-password' };

test('examples/multi-provider: the chooser, a partners session is signed out for /hr, the portal\'s provider rule, a new sign-in replaces the session', async (t) => {
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const idpOpts = { redirectUris: [`${publicUrl}/oauth2/callback`] };
  const [corp, partners, upstream] = await Promise.all([startTestIdp(t, idpOpts), startTestIdp(t, idpOpts), startTestUpstream(t)]);
  await startExample(t, FILE, {
    PUBLIC_URL: publicUrl, SESSION_SECRET: TEST_SESSION_SECRET,
    CORP_ISSUER: corp.issuer, CORP_CLIENT_ID: TEST_CLIENT_ID, CORP_CLIENT_SECRET: TEST_CLIENT_SECRET,
    PARTNERS_ISSUER: partners.issuer, PARTNERS_CLIENT_ID: TEST_CLIENT_ID, PARTNERS_CLIENT_SECRET: TEST_CLIENT_SECRET,
    HR_UPSTREAM: upstream.url, ORDERS_API: upstream.url, PORTAL_UPSTREAM: upstream.url, WIKI_UPSTREAM: upstream.url,
  }, port);
  const get = async (path: string, jar: CookieJar, browser = false) => {
    const res = await request(`${publicUrl}${path}`, { headers: { cookie: jar.header(publicUrl), accept: browser ? 'text/html' : 'application/json', ...(browser ? { 'sec-fetch-mode': 'navigate' } : {}) } });
    return { status: res.statusCode, location: res.headers.location as string | undefined, body: await res.body.text() };
  };

  // The wiki accepts both: the chooser, then Partners.
  const jar = new CookieJar();
  const wiki = await get('/wiki/page', jar, true);
  assert.equal(new URL(wiki.location!).pathname, '/oauth2/start');
  const chooser = await followRedirects(wiki.location!, jar);
  assert.match(chooser.body, /Example Corp staff/);
  assert.match(chooser.body, /corp\.example\.com/);
  const partnersLink = /href="([^"]*provider=partners[^"]*)"/.exec(chooser.body)![1]!.replace(/&amp;/g, '&');
  const signedIn = await loginViaHttp(new URL(partnersLink, publicUrl).href, { ...ALICE, jar });
  assert.equal(signedIn.finalUrl, `${publicUrl}/wiki/page`);
  assert.equal((await get('/wiki/page', jar)).status, 200);

  // /hr is corp's: signed out there (browser → corp's sign-in; API → 401), the wiki still works.
  const hr = await get('/hr', jar, true);
  assert.equal(new URL(hr.location!).origin, corp.issuer);
  assert.equal((await get('/hr', jar)).status, 401);
  assert.equal((await get('/wiki/page', jar)).status, 200);
  // The portal: partners' alice is not @acme.example.
  assert.equal((await get('/portal', jar)).status, 403);

  // Signing in with corp replaces the session: the portal lets corp in; /hr wants the hr group.
  await loginViaHttp(`${publicUrl}/oauth2/start?provider=corp&rd=/portal`, { ...ALICE, jar });
  assert.equal((await get('/portal', jar)).status, 200);
  assert.equal((await get('/hr', jar)).status, 403, 'corp\'s alice, but not in hr');
});
