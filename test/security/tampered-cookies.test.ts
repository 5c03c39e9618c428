// Attack: a session cookie that was altered, cut short, invented, sealed by another deployment, or
// copied from another Portcullis cookie — plus a flood of chunk names. Each is "no session": the
// browser is sent to sign in, an API client gets 401, nothing reaches the upstream, never a 500.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { startStack, type Stack } from '../helpers/stack.js';
import { loginViaHttp } from '../helpers/browserless-login.js';
import { ALICE, API, NAVIGATION, setCookies } from './support.js';

const OTHER_SECRET = 'another-deployment-secret-0123456789-abcdefghijkl';

async function signIn(s: Stack): Promise<string> {
  const r = await loginViaHttp(`${s.url}/`, ALICE);
  assert.equal(r.status, 200, 'login works');
  const value = r.jar.get('portcullis', s.url);
  // v2: compressed before sealing (a session with tokens is over the codec's COMPRESS_MIN); v1: not.
  assert.ok(value && /^v[12]\./.test(value), 'sealed session cookie issued');
  return value;
}

/** Flips one base64url character in the middle of the sealed value (never a padding-only bit). */
function flipOne(value: string, at = Math.floor(value.length / 2)): string {
  const c = value[at]!;
  const replacement = c === 'A' ? 'B' : 'A';
  return value.slice(0, at) + replacement + value.slice(at + 1);
}

/** The cookie counts as no session: 302 to the IdP for a browser, 401 JSON for an API client, upstream untouched. */
async function assertNoSession(s: Stack, cookie: string, what: string): Promise<void> {
  const before = s.upstream.requests.length;
  const nav = await request(`${s.url}/dashboard`, { headers: { ...NAVIGATION, cookie } });
  await nav.body.dump();
  assert.equal(nav.statusCode, 302, `${what}: browser navigation`);
  assert.equal(new URL(String(nav.headers.location)).origin, s.idp.issuer, `${what}: redirected to the IdP`);

  const api = await request(`${s.url}/dashboard`, { headers: { ...API, cookie } });
  const text = await api.body.text();
  assert.equal(api.statusCode, 401, `${what}: API call (${text.slice(0, 200)})`);
  assert.match(String(api.headers['content-type']), /application\/json/, what);
  assert.equal(JSON.parse(text).error, 'unauthenticated', what);
  assert.ok(api.headers['www-authenticate'], `${what}: WWW-Authenticate`);

  const info = await request(`${s.url}/oauth2/userinfo`, { headers: { ...API, cookie } });
  await info.body.dump();
  assert.equal(info.statusCode, 401, `${what}: userinfo`);

  assert.equal(s.upstream.requests.length, before, `${what}: nothing reached the upstream`);
}

/** The proxy still serves a good session afterwards. */
async function assertStillServing(s: Stack, good: string): Promise<void> {
  const before = s.upstream.requests.length;
  const ok = await request(`${s.url}/after`, { headers: { ...API, cookie: `portcullis=${good}` } });
  await ok.body.dump();
  assert.equal(ok.statusCode, 200);
  assert.equal(s.upstream.requests.length, before + 1);
  assert.equal(s.upstream.requests.at(-1)!.headers['x-forwarded-user'], 'alice');
}

test('altered, truncated and invented session cookies are no session (never a 500)', async (t) => {
  const s = await startStack(t);
  const good = await signIn(s);
  // The control: the untouched cookie works, also split into chunks by hand.
  await assertStillServing(s, good);
  const half = Math.floor(good.length / 2);
  const chunked = await request(`${s.url}/chunked`, { headers: { ...API, cookie: `portcullis_0=${good.slice(0, half)}; portcullis_1=${good.slice(half)}` } });
  await chunked.body.dump();
  assert.equal(chunked.statusCode, 200, 'a chunked cookie is joined back');

  const cases: Array<[string, string]> = [
    ['one character flipped (middle)', `portcullis=${flipOne(good)}`],
    ['one character flipped (key id)', `portcullis=${flipOne(good, 4)}`],
    ['one character flipped (auth tag)', `portcullis=${flipOne(good, good.length - 5)}`],
    ['truncated to half', `portcullis=${good.slice(0, half)}`],
    ['last byte cut', `portcullis=${good.slice(0, -1)}`],
    ['only the version prefix', 'portcullis=v1.'],
    ['garbage', 'portcullis=not-a-session-at-all'],
    ['base64 garbage with the right prefix', `portcullis=v1.${Buffer.alloc(200, 7).toString('base64url')}`],
    ['non-base64 characters', 'portcullis=v1.!!!!$$$$****'],
    ['malformed percent-encoding', 'portcullis=%E0%A4%A'],
    ['empty value', 'portcullis='],
    ['relabelled as the other version', `portcullis=${good.startsWith('v2.') ? 'v1' : 'v2'}.${good.slice(3)}`],
    ['a future version tag', `portcullis=v3.${good.slice(3)}`],
    ['only the v2 prefix', 'portcullis=v2.'],
    ['base64 garbage with the v2 prefix', `portcullis=v2.${Buffer.alloc(200, 7).toString('base64url')}`],
    ['huge value', `portcullis=v1.${'A'.repeat(9000)}`],
    ['chunk with a flipped character', `portcullis_0=${flipOne(good.slice(0, half), 10)}; portcullis_1=${good.slice(half)}`],
    ['chunks in the wrong order', `portcullis_0=${good.slice(half)}; portcullis_1=${good.slice(0, half)}`],
    ['a chunk missing', `portcullis_1=${good.slice(half)}`],
  ];
  for (const [what, cookie] of cases) await assertNoSession(s, cookie, what);
  await assertStillServing(s, good);
  assert.ok(!a500(s), 'no error-level log line');
});

test('a transaction cookie value moved into the session cookie is no session', async (t) => {
  const s = await startStack(t);
  const good = await signIn(s);
  const start = await request(`${s.url}/oauth2/start?rd=/x`);
  await start.body.dump();
  const txn = setCookies(start.headers).find((c) => c.startsWith('portcullis_txn_'));
  assert.ok(txn, 'transaction cookie issued');
  const txnValue = txn.slice(txn.indexOf('=') + 1, txn.indexOf(';'));
  assert.ok(txnValue.startsWith('v1.'), 'the transaction cookie is sealed by the same codec');
  await assertNoSession(s, `portcullis=${txnValue}`, 'transaction value as session');
  // And the other way: the session value under a transaction name is not a transaction.
  const txnName = txn.slice(0, txn.indexOf('='));
  const state = `${txnName.slice('portcullis_txn_'.length)}.xyz`;
  const cb = await request(`${s.url}/oauth2/callback?code=abc&state=${encodeURIComponent(state)}`, { headers: { ...NAVIGATION, cookie: `${txnName}=${good}` } });
  const body = await cb.body.text();
  assert.equal(cb.statusCode, 400, body.slice(0, 200));
  await assertStillServing(s, good);
});

test('a chunk bomb (hundreds of portcullis_N cookies) costs nothing and is no session', async (t) => {
  const s = await startStack(t);
  const good = await signIn(s);
  // Node's default header limit is 16 KiB: ~700 chunk names fit.
  const names = Array.from({ length: 700 }, (_, i) => `portcullis_${i}=x`);
  const bomb = names.join('; ');
  const t0 = performance.now();
  await assertNoSession(s, bomb, 'chunk bomb');
  // With gaps and huge indices too.
  await assertNoSession(s, ['portcullis_0=v1.AAAA', 'portcullis_99999=x', 'portcullis_5000=y', ...names.slice(2, 300)].join('; '), 'sparse chunk bomb');
  // Real first chunks followed by hundreds of extra ones.
  const half = Math.floor(good.length / 2);
  await assertNoSession(s, [`portcullis_0=${good.slice(0, half)}`, `portcullis_1=${good.slice(half)}`, ...names.slice(2, 400)].join('; '), 'real chunks plus a bomb');
  assert.ok(performance.now() - t0 < 5000, 'answered promptly');

  // The 401 expires only the cookies Portcullis reads (a bounded list), not 700 of them.
  const api = await request(`${s.url}/dashboard`, { headers: { ...API, cookie: bomb } });
  await api.body.dump();
  assert.equal(api.statusCode, 401);
  assert.ok(setCookies(api.headers).length <= 11, `Set-Cookie lines: ${setCookies(api.headers).length}`);
  await assertStillServing(s, good);
  assert.ok(!a500(s), 'no error-level log line');
});

test('a session cookie from another deployment (other secret) does not work, either way round', async (t) => {
  const a = await startStack(t);
  const b = await startStack(t, { existingIdp: a.idp, edit: (raw) => { raw.session = { secrets: [OTHER_SECRET] }; } });
  const fromA = await signIn(a);
  const fromB = await signIn(b);
  await assertStillServing(a, fromA);
  await assertStillServing(b, fromB);
  await assertNoSession(a, `portcullis=${fromB}`, 'cookie of B on A');
  await assertNoSession(b, `portcullis=${fromA}`, 'cookie of A on B');
  await assertStillServing(a, fromA);
  await assertStillServing(b, fromB);
});

test('a bad cookie is expired in the response, with Cache-Control: no-store', async (t) => {
  const s = await startStack(t);
  const good = await signIn(s);
  const api = await request(`${s.url}/dashboard`, { headers: { ...API, cookie: `portcullis=${flipOne(good)}` } });
  await api.body.dump();
  assert.equal(api.statusCode, 401);
  const expired = setCookies(api.headers).find((c) => c.startsWith('portcullis='));
  assert.ok(expired, 'the bad session cookie is cleared');
  assert.match(expired, /Max-Age=0|Expires=Thu, 01 Jan 1970/i);
  assert.match(String(api.headers['cache-control']), /no-store/);
  assert.ok(!a500(s), 'no error-level log line');
});

function a500(s: Stack): boolean {
  return s.logs.some((l) => /"level":50/.test(l));
}
