// Attack: a sign-in link whose `rd` sends the freshly signed-in user to another site (phishing on a
// trusted login page). Every trick must land back on the proxy's own origin, at "/".
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { CookieJar, loginViaHttp } from '../helpers/browserless-login.js';
import { safeRedirect, type RedirectPolicy } from '../../src/signin/redirects.js';
import { ALICE } from './support.js';

/** Written as they would appear after `rd=` in a link (some already percent-encoded). */
const PAYLOADS = [
  '//evil.com',
  '/\\evil.com',
  '/%09/evil.com',
  '/%5cevil.com',
  '/%5Cevil.com',
  'https:evil.com',
  'https://evil.com',
  'http://evil.com',
  'http://127.0.0.1.evil.com/',
  'https://evilexample.com',
  'https://example.com.evil.com/',
  'javascript:alert(1)',
  'JaVaScRiPt:alert(1)',
  'data:text/html,<script>alert(1)</script>',
  '/%2F%2Fevil.com',
  '%2F%2Fevil.com',
  '\\\\evil.com',
  '\\/evil.com',
  'https://user@evil.com',
  'https://app.example.com@evil.com/',
  '///evil.com',
  '/ /evil.com',
  '/%20/evil.com',
  '/%0d%0a/evil.com',
  '//evil.com/%2e%2e',
  'evil.com',
  'ftp://evil.com/',
  'https://evil.com/.example.com',
  'https://evil.com?.example.com',
  'https://evil.com#.example.com',
];

interface Landing { location: string; hops: Array<{ status: number; url: string }> }

/**
 * Runs /oauth2/start?rd=<rdRaw> through a full sign-in and returns where the callback sends the
 * browser. Following stops at the first URL that is neither the IdP nor one of Portcullis's own
 * endpoints, so an open redirect is caught before anything is fetched from "evil.com".
 */
async function landing(s: Stack, jar: CookieJar, rdRaw: string): Promise<Landing> {
  const stopAt = (u: URL) => !(u.origin === s.idp.issuer || (u.origin === s.url && u.pathname.startsWith('/oauth2/')));
  const r = await loginViaHttp(`${s.url}/oauth2/start?rd=${rdRaw}`, { ...ALICE, jar, stopAt });
  const cb = r.hops.filter((h) => h.url.startsWith(`${s.url}/oauth2/callback`));
  assert.equal(cb.length, 1, `one callback for rd=${rdRaw}: ${JSON.stringify(r.hops)}`);
  assert.equal(cb[0]!.status, 302, `callback redirects for rd=${rdRaw}`);
  assert.ok(r.hops.length < 10, 'no redirect loop');
  return { location: r.finalUrl, hops: r.hops };
}

test('no rd payload leads off the proxy origin after sign-in (falls back to /)', async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.redirects = { allowedDomains: ['.example.com'] }; } });
  const jar = new CookieJar();
  for (const p of PAYLOADS) {
    for (const rdRaw of new Set([p.replace(/ /g, '%20'), encodeURIComponent(p)])) {
      const { location } = await landing(s, jar, rdRaw);
      assert.equal(location, `${s.url}/`, `rd=${rdRaw} must fall back to /, got ${location}`);
    }
  }
  assert.ok(jar.get('portcullis', s.url), 'the sign-ins themselves succeeded');
});

test('same-origin return URLs and allowed domains are honoured', async (t) => {
  const s = await startStack(t, { edit: (raw) => { raw.redirects = { allowedDomains: ['.example.com'] }; } });
  const jar = new CookieJar();
  const deep = await landing(s, jar, encodeURIComponent('/deep/link?x=1'));
  assert.equal(deep.location, `${s.url}/deep/link?x=1`);
  const abs = await landing(s, jar, encodeURIComponent(`${s.url}/other/page?y=2`));
  assert.equal(abs.location, `${s.url}/other/page?y=2`);
  const allowed = await landing(s, jar, encodeURIComponent('https://grafana.example.com/d/abc?orgId=1'));
  assert.equal(allowed.location, 'https://grafana.example.com/d/abc?orgId=1');
  const apex = await landing(s, jar, encodeURIComponent('https://example.com/'));
  assert.equal(apex.location, 'https://example.com/');
  // A sign-in started at a deep link by the door itself comes back to it.
  const viaDoor = await loginViaHttp(`${s.url}/some/where?q=1`, { ...ALICE, jar: new CookieJar() });
  assert.equal(viaDoor.finalUrl, `${s.url}/some/where?q=1`);
  assert.equal(s.upstream.requests.at(-1)!.url, '/some/where?q=1');
});

test('without allowedDomains only the proxy origin is allowed', async (t) => {
  const s = await startStack(t);
  const jar = new CookieJar();
  for (const rd of ['https://grafana.example.com/', 'http://127.0.0.1/', `http://localhost:${new URL(s.url).port}/`, `${s.url.replace('http:', 'https:')}/x`]) {
    const { location } = await landing(s, jar, encodeURIComponent(rd));
    assert.equal(location, `${s.url}/`, `rd=${rd}`);
  }
});

test('sign-out never redirects off-site either', async (t) => {
  const s = await startStack(t);
  const jar = new CookieJar();
  await loginViaHttp(`${s.url}/`, { ...ALICE, jar });
  for (const rd of ['//evil.com', 'https://evil.com/', '/\\evil.com', 'javascript:alert(1)']) {
    await loginViaHttp(`${s.url}/`, { ...ALICE, jar });
    const res = await request(`${s.url}/oauth2/sign_out`, {
      method: 'POST',
      headers: { cookie: jar.header(s.url), 'content-type': 'application/x-www-form-urlencoded', origin: s.url },
      body: new URLSearchParams({ rd }).toString(),
    });
    await res.body.dump();
    assert.equal(res.statusCode, 303, rd);
    const loc = new URL(String(res.headers.location));
    // Either straight back to us, or via the IdP's end_session endpoint with a post-logout URI on our origin.
    const back = loc.origin === s.idp.issuer ? new URL(loc.searchParams.get('post_logout_redirect_uri') ?? '') : loc;
    assert.equal(back.origin, s.url, `rd=${rd} → ${loc.href}`);
    assert.ok([s.idp.issuer, s.url].includes(loc.origin), `rd=${rd} → ${loc.href}`);
  }
});

test('safeRedirect, as a table', () => {
  const policy: RedirectPolicy = { origin: 'https://apps.example.com', allowedDomains: ['.example.com', 'exact.org'] };
  const FALLBACK = 'https://apps.example.com/';
  const table: Array<[string | undefined, string]> = [
    // Allowed.
    ['/deep/link?x=1', 'https://apps.example.com/deep/link?x=1'],
    ['/a/b#frag', 'https://apps.example.com/a/b#frag'],
    ['https://apps.example.com/x', 'https://apps.example.com/x'],
    ['https://grafana.example.com/d/1?orgId=2', 'https://grafana.example.com/d/1?orgId=2'],
    ['https://a.b.example.com/', 'https://a.b.example.com/'],
    ['https://example.com/', 'https://example.com/'],
    ['https://GRAFANA.Example.COM/', 'https://grafana.example.com/'],
    ['https://exact.org/page', 'https://exact.org/page'],
    // Refused.
    [undefined, FALLBACK],
    ['', FALLBACK],
    ['https://sub.exact.org/', FALLBACK],
    ['https://evilexample.com/', FALLBACK],
    ['https://example.com.evil.com/', FALLBACK],
    ['https://evil.com/.example.com', FALLBACK],
    ['https://evil.com?.example.com', FALLBACK],
    ['https://evil.com#.example.com', FALLBACK],
    ['http://grafana.example.com/', FALLBACK], // downgrade to http from an https publicUrl
    ['https://user@grafana.example.com/', FALLBACK],
    ['https://grafana.example.com@evil.com/', FALLBACK],
    ['//evil.com', FALLBACK],
    ['/\\evil.com', FALLBACK],
    ['/\t/evil.com', FALLBACK],
    ['/%09/evil.com', FALLBACK],
    ['/%5cevil.com', FALLBACK],
    ['/%2F%2Fevil.com', FALLBACK],
    ['https:evil.com', FALLBACK],
    ['https:/evil.com', FALLBACK],
    ['javascript:alert(1)', FALLBACK],
    ['\\\\evil.com', FALLBACK],
    ['evil.com', FALLBACK],
    ['/%E0%A4%A', FALLBACK],
    [`/${'a'.repeat(5000)}`, FALLBACK],
  ];
  for (const [rd, expected] of table) assert.equal(safeRedirect(rd, policy), expected, `rd=${JSON.stringify(rd)}`);
});
