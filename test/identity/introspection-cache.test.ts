// The introspection cache's rules, with a recording stand-in for the IdP's endpoint (its answers are
// RFC 7662 documents; the end-to-end tests against oidc-provider are in introspection.test.ts):
// what is accepted, what is cached and for how long, one request per token in flight, the IdP's
// failures never cached and never an allow, tokens sharing a prefix never sharing an entry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Introspector, type IntrospectionResponse } from '../../src/signin/introspection.js';
import { PortcullisError, errors } from '../../src/errors.js';

const ISSUER = 'https://idp.example';

function setup(answer: (token: string) => IntrospectionResponse | Promise<IntrospectionResponse>) {
  let now = 1_700_000_000_000;
  const asked: string[] = [];
  const observed: string[] = [];
  const intro = new Introspector(
    { issuer: ISSUER, audiences: ['api', 'portcullis'], cacheTtlMs: 30_000, negativeCacheTtlMs: 5_000, cacheMaxEntries: 100, clockToleranceSec: 0 },
    { introspect: async (t) => { asked.push(t); return answer(t); }, now: () => now, observe: (r) => observed.push(r) },
  );
  return { intro, asked, observed, advance: (ms: number) => { now += ms; }, nowSec: () => Math.floor(now / 1000) };
}

const active = (o: Record<string, unknown> = {}): IntrospectionResponse => ({ active: true, iss: ISSUER, sub: 'alice', client_id: 'portcullis', exp: Math.floor(Date.now() / 1000) + 3600, ...o });

async function refusal(p: Promise<unknown>): Promise<string> {
  try { await p; } catch (err) { assert.ok(err instanceof PortcullisError); return `${err.code} ${String((err.cause as Error | undefined)?.message ?? '')}`; }
  assert.fail('expected a refusal');
}

test('accepted only when active, from this issuer, for an accepted audience, unexpired, an access token with a sub', async () => {
  const exp = Math.floor(1_700_000_000_000 / 1000) + 600;
  const cases: Array<[string, IntrospectionResponse, RegExp | null]> = [
    ['active', active({ exp }), null],
    ['inactive', { active: false }, /not active/],
    ['active as a string', { ...active({ exp }), active: 'true' }, /not active/],
    ['another issuer', active({ exp, iss: 'https://evil.example' }), /not this issuer/],
    ['no iss (optional in RFC 7662)', { ...active({ exp }), iss: undefined }, null],
    ['aud accepted', active({ exp, aud: ['other', 'api'] }), null],
    ['aud not accepted (client_id is then not enough)', active({ exp, aud: 'other' }), /audience/],
    ['no aud, client_id not accepted', active({ exp, client_id: 'someone-else' }), /audience/],
    ['expired', active({ exp: Math.floor(1_700_000_000_000 / 1000) - 1 }), /expired/],
    ['not yet valid', active({ exp, nbf: Math.floor(1_700_000_000_000 / 1000) + 60 }), /nbf/],
    ['a refresh token', active({ exp, token_type: 'refresh_token' }), /not an access token/],
    ['no sub', { ...active({ exp }), sub: undefined }, /no sub/],
  ];
  for (const [name, said, refused] of cases) {
    const { intro } = setup(() => said);
    if (!refused) assert.equal((await intro.check('t')).sub, said.sub, name);
    else assert.match(await refusal(intro.check('t')), new RegExp(`^invalid_token .*${refused.source}`), name);
  }
});

test('cached for cacheTtl, never past the token\'s exp; refusals for the negative TTL', async () => {
  const exp = Math.floor(1_700_000_000_000 / 1000) + 10; // the token's own expiry, 10 s from the start
  const s = setup((t) => (t === 'bad' ? { active: false } : active({ exp })));
  await s.intro.check('good');
  await s.intro.check('good');
  assert.equal(s.asked.length, 1, 'the second check is a cache hit');
  s.advance(10_500);
  await assert.rejects(s.intro.check('good'), (e: PortcullisError) => e.code === 'invalid_token', 'past exp: asked again, and now expired');
  assert.equal(s.asked.length, 2, 'the cache entry did not outlive exp (10 s < cacheTtl 30 s)');

  await refusal(s.intro.check('bad'));
  await refusal(s.intro.check('bad'));
  assert.equal(s.asked.filter((t) => t === 'bad').length, 1, 'a refusal is cached');
  s.advance(5_001);
  await refusal(s.intro.check('bad'));
  assert.equal(s.asked.filter((t) => t === 'bad').length, 2, 'for the negative TTL only');
});

test('a revoked token is refused at most cacheTtl after the IdP starts saying so', async () => {
  let revoked = false;
  const s = setup(() => (revoked ? { active: false } : active()));
  await s.intro.check('tok');
  revoked = true;
  s.advance(29_000);
  await s.intro.check('tok'); // still inside the TTL: the cached answer
  s.advance(1_001);
  await assert.rejects(s.intro.check('tok'), (e: PortcullisError) => e.code === 'invalid_token');
});

test('tokens sharing a long prefix never share a cache entry (the key is the whole token\'s SHA-256)', async () => {
  const prefix = 'x'.repeat(4096);
  const s = setup((t) => (t.endsWith('good') ? active() : { active: false }));
  await s.intro.check(`${prefix}good`);
  await refusal(s.intro.check(`${prefix}evil`));
  await refusal(s.intro.check(`${prefix}goo`));
  assert.equal(s.asked.length, 3, 'each token asked about itself');
});

test('one request per token in flight: 50 concurrent checks, one IdP call', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const s = setup(async () => { await gate; return active(); });
  const all = Promise.all(Array.from({ length: 50 }, () => s.intro.check('same')));
  release();
  const results = await all;
  assert.equal(results.length, 50);
  assert.equal(s.asked.length, 1);
});

test('the IdP failing: the uncached token is refused with its 5xx, nothing is cached, a cached positive keeps working', async () => {
  let down = false;
  const s = setup(() => { if (down) throw errors.idpUnavailable(new Error('ECONNREFUSED')); return active(); });
  await s.intro.check('known');
  down = true;
  await assert.rejects(s.intro.check('new'), (e: PortcullisError) => e.code === 'ERR_IDP_UNAVAILABLE' && e.statusCode === 503);
  await assert.rejects(s.intro.check('new'), (e: PortcullisError) => e.code === 'ERR_IDP_UNAVAILABLE');
  assert.equal(s.asked.filter((t) => t === 'new').length, 2, 'a failure is never cached');
  assert.equal((await s.intro.check('known')).sub, 'alice', 'a cached positive keeps working until its TTL');
  assert.deepEqual(s.observed, ['active', 'error', 'error']);
});

test('purge by sub or sid drops that subject\'s cached positives only', async () => {
  const s = setup((t) => active({ sub: t.startsWith('a') ? 'alice' : 'bob', sid: t.startsWith('a') ? 'sid-a' : 'sid-b' }));
  await s.intro.check('a1');
  await s.intro.check('a2');
  await s.intro.check('b1');
  assert.equal(s.intro.purge({ sub: 'alice' }), 2);
  await s.intro.check('a1');
  await s.intro.check('b1');
  assert.deepEqual(s.asked, ['a1', 'a2', 'b1', 'a1'], 'alice\'s tokens asked again, bob\'s still cached');
  assert.equal(s.intro.purge({ sid: 'sid-b' }), 1);
});
