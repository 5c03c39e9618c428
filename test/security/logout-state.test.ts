// RP-initiated logout carries a `state` bound to the browser (issue 13 item 5): some IdPs only
// redirect back to post_logout_redirect_uri with one. /oauth2/signed_out redirects on (to the
// sign-out's `rd`, checked like every redirect) only for this browser's own pending logout; a
// missing, foreign or replayed state redirects nowhere and the signed-out page still shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { CookieJar, followRedirects, loginViaHttp, parseForms } from '../helpers/browserless-login.js';

const ALICE = { user: 'alice', password: 'alice-password' };

async function signOut(s: Stack, jar: CookieJar, rd?: string) {
  const res = await request(`${s.url}/oauth2/sign_out`, {
    method: 'POST',
    headers: { cookie: jar.header(s.url), 'content-type': 'application/x-www-form-urlencoded', origin: s.url },
    body: new URLSearchParams(rd === undefined ? {} : { rd }).toString(),
  });
  await res.body.dump();
  jar.store(res.headers['set-cookie'], s.url);
  assert.equal(res.statusCode, 303);
  return new URL(String(res.headers.location));
}

/** Confirms the dev IdP's end-session page; returns where the IdP sends the browser back (not requested). */
async function confirmAtIdp(s: Stack, endSession: URL, jar: CookieJar): Promise<URL> {
  const page = await followRedirects(endSession, jar, { stopAt: (u) => u.origin === s.url });
  if (page.stopped) return new URL(page.finalUrl);
  const form = parseForms(page.body, page.finalUrl)[0];
  assert.ok(form, `the IdP's end-session page has a form: ${page.body.slice(0, 300)}`);
  const back = await followRedirects(form.action, jar, { method: 'POST', body: form.fields.toString(), headers: { origin: s.idp.issuer }, stopAt: (u) => u.origin === s.url });
  assert.ok(back.stopped, `the IdP sends the browser back to us: ${back.finalUrl}`);
  return new URL(back.finalUrl);
}

async function get(url: string | URL, jar: CookieJar) {
  const r = await request(url, { headers: { cookie: jar.header(url), accept: 'text/html' } });
  const body = await r.body.text();
  jar.store(r.headers['set-cookie'], url);
  return { status: r.statusCode, location: r.headers.location as string | undefined, body };
}

test('RP-initiated logout sends a state bound to the browser; coming back with it goes on to rd', async (t) => {
  const s = await startStack(t);
  const { jar } = await loginViaHttp(`${s.url}/`, ALICE);
  const end = await signOut(s, jar, '/goodbye?x=1');
  assert.equal(end.origin, s.idp.issuer, 'to the IdP\'s end_session_endpoint');
  const state = end.searchParams.get('state');
  assert.ok(state && state.length >= 22, `a state is sent: ${end.href}`);
  assert.equal(end.searchParams.get('post_logout_redirect_uri'), `${s.url}/oauth2/signed_out`, 'one post-logout URI to register, whatever rd');
  assert.ok(jar.names(s.url).includes('portcullis_logout'), `a pending-logout cookie is set (have ${jar.names(s.url).join(',')})`);
  assert.ok(!jar.get('portcullis_logout', s.url)!.includes(state), 'sealed: the cookie does not show the state');

  const back = await confirmAtIdp(s, end, jar);
  assert.equal(back.pathname, '/oauth2/signed_out');
  assert.equal(back.searchParams.get('state'), state, 'the IdP echoes the state');
  const landed = await get(back, jar);
  assert.equal(landed.status, 303);
  assert.equal(landed.location, `${s.url}/goodbye?x=1`);
  assert.ok(!jar.names(s.url).includes('portcullis_logout'), 'the pending logout is single use');

  // The same return URL again (a reload, or someone else's copy): no redirect, the page shows.
  const again = await get(back, jar);
  assert.equal(again.status, 200);
  assert.equal(again.location, undefined);
  assert.match(again.body, /signed out/i);
});

test('/oauth2/signed_out with a missing, forged or another browser\'s state redirects nowhere; the page still shows', async (t) => {
  const s = await startStack(t);
  const victim = (await loginViaHttp(`${s.url}/`, ALICE)).jar;
  const end = await signOut(s, victim, `${s.url}/somewhere`);
  const state = end.searchParams.get('state')!;
  assert.ok(state);

  // Another browser (no pending logout) brought to the return URL with the victim's state.
  const stranger = new CookieJar();
  const foreign = await get(`${s.url}/oauth2/signed_out?state=${encodeURIComponent(state)}`, stranger);
  assert.equal(foreign.status, 200);
  assert.equal(foreign.location, undefined, 'a foreign state redirects nowhere');
  assert.match(foreign.body, /signed out/i);

  // A browser with its own pending logout, but a state that is not its own (or none at all).
  const other = (await loginViaHttp(`${s.url}/`, { ...ALICE, jar: new CookieJar() })).jar;
  const otherEnd = await signOut(s, other, '/mine');
  assert.notEqual(otherEnd.searchParams.get('state'), state, 'a fresh state per sign-out');
  for (const q of [`?state=${encodeURIComponent(state)}`, '?state=forged', '']) {
    const jar = new CookieJar();
    jar.set('portcullis_logout', other.get('portcullis_logout', s.url)!, s.url);
    const r = await get(`${s.url}/oauth2/signed_out${q}`, jar);
    assert.equal(r.status, 200, q);
    assert.equal(r.location, undefined, `no redirect for ${q || 'no state'}`);
    assert.match(r.body, /signed out/i);
  }

  // The victim's own return still works.
  const own = await get(`${s.url}/oauth2/signed_out?state=${encodeURIComponent(state)}`, victim);
  assert.equal(own.status, 303);
  assert.equal(own.location, `${s.url}/somewhere`);
});

test('sign-out rd is still checked: an off-site rd never becomes the redirect after the IdP', async (t) => {
  const s = await startStack(t);
  for (const rd of ['https://evil.example/', '//evil.example', '/\\evil.example']) {
    const { jar } = await loginViaHttp(`${s.url}/`, { ...ALICE, jar: new CookieJar() });
    const end = await signOut(s, jar, rd);
    const state = end.searchParams.get('state')!;
    const r = await get(`${s.url}/oauth2/signed_out?state=${encodeURIComponent(state)}`, jar);
    assert.equal(r.status, 303, rd);
    assert.equal(new URL(r.location!).origin, s.url, `rd=${rd} → ${r.location}`);
  }
});
